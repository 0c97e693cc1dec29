"""`ticketlab.find_tickets` on a model, data and loss of this file: IMP with rewinding and random pruning fed by a
DataLoader, resumed exactly after kill -9, read by `ticketlab report`; custom steps and metrics; bad input refused
before anything is written."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

import ticketlab
from ticketlab import PruneSpec, TicketlabError

from .conftest import comparable, run_cli

REPO = Path(__file__).resolve().parents[1]


class SmallCNN(nn.Module):
    """A CNN of the user's, not in ticketlab's zoo: conv, pool, linear, on 8x8 digits."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 16, 10)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.conv(x)), 2)
        return self.fc(x.flatten(1))


class Digits(Dataset):
    """A map-style dataset yielding (image, label) items one at a time, as a user's would."""

    def __init__(self, start: int, stop: int):
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        self.x = torch.tensor(x[start:stop], dtype=torch.float32).view(-1, 1, 8, 8) / 16
        self.y = torch.tensor(y[start:stop])

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def lottery(runs_dir, **changes):
    """IMP with rewinding to θ0 and the random-pruning baseline, label-smoothed cross-entropy (not the default)."""
    torch.manual_seed(0)
    options = dict(loss=nn.CrossEntropyLoss(label_smoothing=0.1), steps=40, levels=2, baselines=["random_pruning"],
                   prune=PruneSpec(rate=0.3), runs_dir=runs_dir,
                   settings={"train.eval_every": "20it", "train.checkpoint_every": "5it"})
    options.update(changes)
    train = DataLoader(Digits(0, 1000), batch_size=50, shuffle=True)
    return ticketlab.find_tickets(SmallCNN(), train, DataLoader(Digits(1000, 1300), batch_size=100),
                                  Digits(1300, 1797), **options)


def test_find_tickets_trains_levels_and_baselines(tmp_path):
    tickets = lottery(tmp_path)
    assert tickets.levels() == [0, 1, 2]
    densities = [tickets.summary(level)["density"] for level in (0, 1, 2)]
    assert densities == pytest.approx([1.0, 0.7, 0.49], abs=0.01)
    assert tickets.summary(2, "random_pruning")["density"] == pytest.approx(densities[2])
    model, masks = tickets.model(2), tickets.masks(2)
    for name, mask in masks.items():  # the saved ticket's pruned weights are exactly zero
        assert (model.get_parameter(name)[~mask] == 0).all()
    assert tickets.summary(0)["early_stop_test_acc"] > 0.5  # it learned: chance is 0.1
    assert "best IMP ticket" in str(tickets)
    report = run_cli("report", tmp_path)
    assert report.returncode == 0, report.stderr
    assert "smallcnn" in report.stdout


def test_level_1_starts_from_theta0(tmp_path):
    """Rewinding to init: the first row of level 1 is the masked θ0 evaluated, so rerunning θ0 masked gives it."""
    tickets = lottery(tmp_path, levels=1)
    from ticketlab.engine.store import load_weights

    theta0 = load_weights(tickets.root / "init.safetensors", SmallCNN())
    masks = tickets.masks(1)
    masks.apply(theta0)
    first = [line for line in (tickets.stage(1) / "metrics.jsonl").read_text().splitlines()][0]
    val = Digits(1000, 1300)
    with torch.no_grad():
        loss = nn.CrossEntropyLoss(label_smoothing=0.1)(theta0(val.x), val.y).item()
    assert __import__("json").loads(first)["val_loss"] == pytest.approx(loss, rel=1e-5)


def run_in_subprocess(runs_dir: Path) -> subprocess.Popen:
    code = f"from tests.test_api import lottery; lottery({str(runs_dir)!r})"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def test_kill_9_then_rerun_gives_the_same_numbers(tmp_path):
    lottery(tmp_path / "reference")
    expected = comparable(tmp_path / "reference")
    proc = run_in_subprocess(tmp_path / "killed")
    deadline = time.time() + 120
    while not list((tmp_path / "killed").rglob("level_01/checkpoint.safetensors")) and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not list((tmp_path / "killed").rglob("level_02/summary.json")), "killed too late to test a resume"
    lottery(tmp_path / "killed")
    assert comparable(tmp_path / "killed") == expected


def test_custom_step_and_metric_regression(tmp_path):
    """A loop that is not (inputs, targets) -> loss: dict batches, a step of the user's, mean squared error."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 6, generator=g)
    y = x @ torch.randn(6, 1, generator=g)

    class Pairs(Dataset):
        def __len__(self):
            return len(x)

        def __getitem__(self, i):
            return {"features": x[i], "value": y[i]}

    def step(model, batch):
        out = model(batch["features"])
        return nn.functional.mse_loss(out, batch["value"]), out, batch["value"]

    def neg_mse(out, target):
        return -nn.functional.mse_loss(out, target).item()

    torch.manual_seed(0)
    tickets = ticketlab.find_tickets(nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 1)), Pairs(), Pairs(),
                                     step=step, metric=neg_mse, steps=60, levels=1, baselines=["random_reinit"],
                                     optimizer=lambda params: torch.optim.SGD(params, lr=0.0, momentum=0.9), lr=0.05,
                                     runs_dir=tmp_path, settings={"train.eval_every": "30it"})
    dense = tickets.summary(0)
    assert dense["macs_kept"] is None  # dict batches: ticketlab cannot know what forward takes
    assert dense["best_val_acc"] > -0.5 * float(y.var())  # it learned: the metric is -MSE
    assert tickets.summary(1, "random_reinit")["density"] == pytest.approx(0.8, abs=0.01)
    assert "SGD" in str(tickets.store.config().train.task)


class Broken(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(x)  # expects flat inputs: fails on (N, 1, 8, 8)


class Stream(IterableDataset):
    def __iter__(self):
        yield torch.zeros(1, 8, 8), 0


@pytest.mark.parametrize("model, train, options, match", [
    (Broken(), None, {}, "model's forward or the loss failed on a training batch: RuntimeError"),
    (SmallCNN(), TensorDataset(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long)), {}, "no samples"),
    (SmallCNN(), Stream(), {}, "IterableDataset"),
    (SmallCNN(), TensorDataset(torch.zeros(10, 1, 8, 8), torch.zeros(10, 3)), {"loss": nn.MSELoss()},
     "model's forward or the loss failed"),
    (SmallCNN(), None, {"loss": lambda out, y: nn.functional.cross_entropy(out, y, reduction="none")},
     "must be a scalar tensor"),
    (SmallCNN(), None, {"baselines": ["random_reinit"], "model": "not a model"}, "must be a torch.nn.Module"),
    (SmallCNN(), None, {"prune": PruneSpec(exclude=("nothing*",))}, "nothing"),
])
def test_bad_input_is_refused_before_anything_is_written(tmp_path, model, train, options, match):
    train = Digits(0, 100) if train is None else train
    model = options.pop("model", model)
    with pytest.raises(TicketlabError, match=match):
        ticketlab.find_tickets(model, train, Digits(100, 200), runs_dir=tmp_path / "runs", steps=5, **options)
    assert not (tmp_path / "runs").exists()


def test_another_model_init_never_resumes_into_a_run(tmp_path):
    first = lottery(tmp_path, levels=0)
    torch.manual_seed(1)
    again = ticketlab.find_tickets(SmallCNN(), Digits(0, 1000), Digits(1000, 1300), steps=40, levels=0,
                                   loss=nn.CrossEntropyLoss(label_smoothing=0.1), runs_dir=tmp_path,
                                   settings={"train.eval_every": "20it", "train.checkpoint_every": "5it"})
    assert again.root != first.root  # θ0 differs: another run directory, by the config's model.digest


def test_metric_rows_also_go_to_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    from tests.test_integrations_tensorboard import scalars

    tickets = lottery(tmp_path / "runs", levels=1, tensorboard=tmp_path / "tb")
    got = scalars(tmp_path / "tb" / tickets.root.name)
    rows = [__import__("json").loads(line) for line in (tickets.stage(1) / "metrics.jsonl").read_text().splitlines()]
    assert got["level_01/val_acc"] == [(r["step"], pytest.approx(r["val_acc"])) for r in rows]
    assert "level_01/baselines/random_pruning/test_loss" in got


def test_hugging_face_model_with_its_own_loss(tmp_path):
    """loss="model": dict batches go in as keyword arguments, the model's .loss trains, .logits score."""
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=16, num_labels=2)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 50, (120, 8), generator=g)
    labels = (ids[:, 0] > 25).long()  # learnable from the first token

    class Tokenised(Dataset):
        def __len__(self):
            return len(ids)

        def __getitem__(self, i):
            return {"input_ids": ids[i], "attention_mask": torch.ones(8, dtype=torch.long), "labels": labels[i]}

    tickets = ticketlab.find_tickets(lambda: transformers.BertForSequenceClassification(config), Tokenised(),
                                     Tokenised(), loss="model", steps=30, batch_size=20, levels=1, optimizer="adamw",
                                     prune=PruneSpec(scope="global", exclude=("*classifier*",)),
                                     baselines=["random_reinit"], runs_dir=tmp_path)
    ticket, masks = tickets.model(1), tickets.masks(1)
    assert "bert.encoder.layer.0.attention.self.query.weight" in masks
    assert all((ticket.get_parameter(n)[~m] == 0).all() for n, m in masks.items())
    assert tickets.summary(0)["best_val_acc"] > 0.6  # above chance on its training data
    assert tickets.store.config().train.task == "loss=model"
