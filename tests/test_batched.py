"""Ticket batching: K copies trained as one batched model equal K separate runs of `train`; resumable; in the engine."""

import copy
import json

import pytest
import torch

from ticketlab.accel import KERNELS
from ticketlab.accel.batching import StackedModel, Ticket, batchable, train_batched
from ticketlab.accel.batching.checkpoints import NEXT, reconcile
from ticketlab.core.files import load_tensors
from ticketlab.core.masks import Masks
from ticketlab.core.pruning import PruneSpec, prune
from ticketlab.data import InMemory, Splits
from ticketlab.data.augment import AUGMENTATIONS
from ticketlab.engine.config import TrainConfig
from ticketlab.engine.lottery import Lottery
from ticketlab.engine.presets import build_config
from ticketlab.engine.schedule import make_plan
from ticketlab.engine.stages import balanced_chunks, run_lotteries
from ticketlab.engine.training import Diverged, train
from ticketlab.models import build_model

from .conftest import Tiny, assert_user_error, main_in_process

ATOL = 1e-5


def splits_for(shape, seed, n=(48, 12, 12), classes=3):
    g = torch.Generator().manual_seed(seed)
    total = sum(n)
    x = torch.randn(total, *shape, generator=g)
    y = ((x.flatten(1)[:, 0] > 0).long() + (x.flatten(1)[:, 1] > 0.5).long()) % classes
    a, b = n[0], n[0] + n[1]
    return Splits(InMemory(x[:a], y[:a]), InMemory(x[a:b], y[a:b]), InMemory(x[b:], y[b:]), num_classes=classes,
                  input_shape=tuple(shape), name="tiny")


MODELS = {
    "mlp": (lambda seed: build_model("mlp", num_classes=3, seed=seed, hidden=(32, 16), input_shape=(1, 6, 6)),
            (1, 6, 6)),
    "conv2": (lambda seed: build_model("conv2", num_classes=3, seed=seed), (3, 32, 32)),
    # residual blocks, batch norm, a strided 1x1 shortcut: the model's own forward over stacked leaves
    "resnet": (lambda seed: build_model("resnet20", num_classes=3, seed=seed, depth=8, width=4), (3, 8, 8)),
}


DENSE_RATES = (0.3, 0.5, 0.7)  # pruning rates of the copies: every layer keeps too much to train sparse
SPARSE_RATES = (0.8, 0.85, 0.9)  # kept 20%..10%: the Linear layers that keep <= 40% train sparse


def tickets_for(name, tmp_path, cfg, k=3, shared_data=False, n=(48, 12, 12), batch=8, rates=DENSE_RATES,
                scope="global"):
    """k copies with their own init, masks (other densities), data seed and — unless shared_data — data split."""
    factory, shape = MODELS[name]
    shared = splits_for(shape, 0, n)
    out = []
    for i in range(k):
        model = factory(10 + i)
        masks = prune(model, Masks.ones(model), PruneSpec(rate=rates[i % len(rates)], scope=scope))
        splits = shared if shared_data else splits_for(shape, i, n)
        plan = make_plan(cfg, len(splits.train), batch, data_seed=100 + i)
        out.append(Ticket(model, masks, splits, plan, tmp_path / f"copy{i}"))
    return out


def separate(tickets, cfg, tmp_path, augment=None):
    """The reference: each copy trained alone by ticketlab.engine.training.train."""
    results = []
    for i, t in enumerate(tickets):
        model = copy.deepcopy(t.model)
        rows = train(model, t.masks, t.splits, cfg, copy.copy(t.plan), tmp_path / f"alone{i}", augment=augment)
        results.append((rows, tensors_of(model)))
    return results


def tensors_of(model):
    """Parameters and buffers (batch norm statistics), cloned."""
    return {n: t.detach().clone() for n, t in model.state_dict().items()}


def without_wall(rows):
    return [{k: v for k, v in r.items() if k != "wall"} for r in rows]


def check_against_separate_runs(tmp_path, name, optimizer, compare, rates=DENSE_RATES, shared_data=False,
                                scope="global"):
    steps = 4 if name == "conv2" else 24
    cfg = TrainConfig(steps=f"{steps}it", optimizer=optimizer, lr=0.01 if optimizer == "sgd" else 1e-3,
                      momentum=0.9, weight_decay=5e-3, eval_every=f"{steps // 2}it", checkpoint_every="1000it")
    small = {"k": 2, "n": (16, 4, 4), "batch": 4} if name == "conv2" else {}  # conv2 is 4.3M weights, 32x32 input
    augment = AUGMENTATIONS.get("cifar") if name == "conv2" else None  # seeded per copy, as `train` seeds it
    tickets = tickets_for(name, tmp_path, cfg, **small, rates=rates, shared_data=shared_data, scope=scope)
    start = [tensors_of(t.model) for t in tickets]
    expected = separate(tickets, cfg, tmp_path, augment)
    rows = train_batched(tickets, cfg, augment=augment)
    for t, r, before, (rows_alone, weights_alone) in zip(tickets, rows, start, expected, strict=True):
        assert r == [json.loads(line) for line in (t.stage / "metrics.jsonl").read_text().splitlines()]
        params = tensors_of(t.model)
        compare(r, rows_alone, params, weights_alone, cfg, steps)
        assert all(not torch.equal(w, before[n]) for n, w in weights_alone.items())  # it did train
        assert all((params[n][~m] == 0).all() for n, m in t.masks.items())  # pruned weights exactly zero


@pytest.mark.parametrize("name,optimizer", [("mlp", "sgd"), ("mlp", "adam"), ("mlp", "adamw"), ("conv2", "sgd"),
                                            ("conv2", "adam"), ("resnet", "sgd"), ("resnet", "adam")])
def test_batched_equals_separate_runs_bit_for_bit_on_one_thread(tmp_path, one_thread, name, optimizer):
    """Own init, masks, data order and data split per copy; metrics (but wall time) and weights all equal."""
    def identical(rows, rows_alone, params, weights_alone, cfg, steps):
        assert without_wall(rows) == without_wall(rows_alone)
        assert all(torch.equal(params[n], w) for n, w in weights_alone.items())

    check_against_separate_runs(tmp_path, name, optimizer, identical)


def close(rows, rows_alone, params, weights_alone, cfg, steps):
    """Within 1e-5, but for a few weights where Adam divides a near-zero gradient by sqrt(v) + 1e-8 and the rounding
    flips its step: by at most 2 lr per step."""
    assert [r["step"] for r in rows] == [r["step"] for r in rows_alone]
    for b, a in zip(rows, rows_alone, strict=True):
        for key in ("train_loss", "val_loss", "test_loss"):
            assert b[key] == pytest.approx(a[key], abs=ATOL) if a[key] is not None else b[key] is None
    for n, w in weights_alone.items():
        diff = (params[n].detach() - w).abs()
        flipped = int((diff > ATOL).sum())
        assert flipped <= max(4, 1e-5 * diff.numel()) and diff.max() <= 2 * cfg.lr * steps, (flipped, diff.max())


def test_batched_matches_separate_runs_on_all_threads(tmp_path):
    """With more threads the numbers differ as runs of `train` with different thread counts differ (a small matmul
    split across threads rounds differently)."""
    check_against_separate_runs(tmp_path, "mlp", "adam", close)


@pytest.mark.parametrize("name,optimizer,shared_data", [("mlp", "sgd", False), ("mlp", "adam", True),
                                                        ("conv2", "adam", False)])
def test_sparse_batched_matches_separate_runs(tmp_path, name, optimizer, shared_data):
    """Copies keeping 20%..10% train their Linear layers as kept entries (sparse_linear.py; conv2: its fc layers,
    after the convolutions; one shared split: batches gathered feature-major): the same training up to rounding
    (other summation order)."""
    from ticketlab.accel.batching.trainer import BatchedRun

    from .test_sparse_training import sparse_kernel_or_fail

    if sparse_kernel_or_fail() is None:
        pytest.skip("no C++ compiler: the sparse kernel cannot be built here")
    cfg = TrainConfig(steps="24it", optimizer=optimizer)
    probe = BatchedRun(tickets_for(name, tmp_path / "probe", cfg, k=2, rates=SPARSE_RATES, shared_data=shared_data),
                       cfg, None)
    assert probe.model.sparse and probe.feature_major == shared_data
    check_against_separate_runs(tmp_path, name, optimizer, close, rates=SPARSE_RATES, shared_data=shared_data)


def test_pruned_weights_get_no_update_and_no_optimizer_state(tmp_path):
    from ticketlab.accel.batching.trainer import BatchedRun

    cfg = TrainConfig(steps="10it", optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=0.1, eval_every="10it")
    tickets = tickets_for("mlp", tmp_path, cfg, k=2)
    run = BatchedRun(tickets, cfg, None)
    for _ in range(10):
        run.train_step()
        run.step += 1
    for k, t in enumerate(tickets):
        for j, name in enumerate(run.model.names):
            if name in t.masks:
                pruned = ~t.masks[name]
                assert (run.model.params[name][k][pruned] == 0).all()
                assert (run.optimizer.optimizer.state[run.slots.views[j][k]]["momentum_buffer"][pruned] == 0).all()


CRASH_CFG = TrainConfig(steps="12it", optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=1e-3, eval_every="3it",
                        checkpoint_every="4it")


def strip_wall(path):
    return without_wall(json.loads(line) for line in path.read_text().splitlines())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference runs, dense and sparse (whose optimizer state of kept entries is spread in checkpoints)."""
    out = {}
    for rates in (DENSE_RATES, SPARSE_RATES):
        out[rates] = tickets_for("mlp", tmp_path_factory.mktemp("ref"), CRASH_CFG, k=3, rates=rates)
        train_batched(out[rates], CRASH_CFG)
    return out


@pytest.mark.parametrize("crash_at,rates", [(1, DENSE_RATES), (3, DENSE_RATES), (5, DENSE_RATES),
                                            (8, DENSE_RATES), (13, DENSE_RATES), (4, SPARSE_RATES),
                                            (8, SPARSE_RATES)])
def test_resume_after_crash_at_any_checkpoint_write_gives_identical_results(tmp_path, monkeypatch, uninterrupted,
                                                                            crash_at, rates):
    """A crash between any two checkpoint files of a group (within phase 1, within phase 2, between them, in the
    final one) resumes bit-identically: counts both checkpoint writes and renames (os.replace, also used inside
    every atomic write)."""
    import ticketlab.accel.batching.trainer as trainer

    real_save, real_replace, calls = trainer.save_checkpoint, trainer.os.replace, {"n": 0}

    def counting(fn):
        def wrapped(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == crash_at:
                raise KeyboardInterrupt  # the process dies here
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(trainer, "save_checkpoint", counting(real_save))
    monkeypatch.setattr(trainer.os, "replace", counting(real_replace))
    with pytest.raises(KeyboardInterrupt):
        train_batched(tickets_for("mlp", tmp_path, CRASH_CFG, k=3, rates=rates), CRASH_CFG)
    monkeypatch.setattr(trainer, "save_checkpoint", real_save)
    monkeypatch.setattr(trainer.os, "replace", real_replace)
    resumed = tickets_for("mlp", tmp_path, CRASH_CFG, k=3, rates=rates)  # a fresh process: the start weights again
    train_batched(resumed, CRASH_CFG)
    for t, ref in zip(resumed, uninterrupted[rates], strict=True):
        want = dict(ref.model.named_parameters())
        assert all(torch.equal(p, want[n]) for n, p in t.model.named_parameters())
        assert strip_wall(t.stage / "metrics.jsonl") == strip_wall(ref.stage / "metrics.jsonl")


def test_a_stage_started_alone_resumes_batched_with_the_rows_and_weights_of_its_own_run(tmp_path, one_thread):
    """Both trainers keep one bookkeeping (engine/bookkeeping.py): copy 0, killed by `train` after its checkpoint at
    step 8 (the row at step 9 dropped on resume), trains on in its own group while copy 1 starts afresh; on one thread
    every row (but wall time) and weight is that of the copy's uninterrupted run alone."""
    cfg = TrainConfig(steps="12it", optimizer="adam", lr=1e-3, eval_every="3it", checkpoint_every="4it")
    tickets = tickets_for("mlp", tmp_path, cfg, k=2)
    expected = separate(tickets, cfg, tmp_path)

    def killed(_):
        raise KeyboardInterrupt

    first = tickets[0]
    with pytest.raises(KeyboardInterrupt):
        train(copy.deepcopy(first.model), first.masks, first.splits, cfg, copy.copy(first.plan), first.stage,
              snapshot=(10, killed))
    assert [r["step"] for r in map(json.loads, (first.stage / "metrics.jsonl").read_text().splitlines())] == [
        0, 3, 6, 9]
    rows = train_batched(tickets, cfg)
    for t, r, (rows_alone, weights_alone) in zip(tickets, rows, expected, strict=True):
        assert without_wall(r) == without_wall(rows_alone) and [x["step"] for x in r] == [0, 3, 6, 9, 12]
        assert r == [json.loads(line) for line in (t.stage / "metrics.jsonl").read_text().splitlines()]
        assert all(torch.equal(p, weights_alone[n]) for n, p in t.model.named_parameters())


def test_a_diverging_copy_stops_the_group_with_its_name_and_keeps_the_metrics(tmp_path):
    cfg = TrainConfig(steps="50it", optimizer="sgd", lr=1e6, eval_every="1it")
    tickets = tickets_for("mlp", tmp_path, cfg, k=3)
    for i, t in enumerate(tickets):
        t.desc = f"ticket {i}"
    diverged = r"(loss became (nan|inf)|mean training loss above \S+ \(10 x its starting value\): \S+)"
    with pytest.raises(Diverged, match=rf"^{diverged} at step \d+ \(ticket \d\); lower train.lr or check "
                                       r"the data; results so far are kept in .*copy\d$"):
        train_batched(tickets, cfg)
    assert all((t.stage / "metrics.jsonl").read_text().count("\n") >= 1 for t in tickets)


def test_reconcile_promotes_complete_and_drops_partial_checkpoints(tmp_path):
    from ticketlab.engine.store import save_checkpoint

    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    stages = [tmp_path / f"s{i}" for i in range(3)]
    for s in stages:
        s.mkdir()
        save_checkpoint(s / "checkpoint.safetensors", model, opt, {"step": 4})
    save_checkpoint(stages[0] / NEXT, model, opt, {"step": 8})  # phase 1 stopped after the first copy
    reconcile(stages)
    assert not any((s / NEXT).exists() for s in stages)
    assert all(json.loads(load_tensors(s / "checkpoint.safetensors")[1]["extra"])["step"] == 4 for s in stages)
    for s in stages[1:]:  # phase 1 complete, phase 2 renamed the first copy only
        save_checkpoint(s / NEXT, model, opt, {"step": 8})
    save_checkpoint(stages[0] / "checkpoint.safetensors", model, opt, {"step": 8})
    reconcile(stages)
    assert all(json.loads(load_tensors(s / "checkpoint.safetensors")[1]["extra"])["step"] == 8 for s in stages)


class MixesTheBatch(Tiny):
    def forward(self, x):
        return super().forward(x - x.mean(0))  # each copy's batch statistics would mix with the other copies'


class OwnsAParameter(Tiny):
    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x):
        return super().forward(x) * self.scale


def test_which_models_batch():
    for name in ("lenet300", "lenet5", "conv2", "mlp", "resnet20", "vgg16-cifar"):
        assert batchable(build_model(name, seed=0)), name
    assert batchable(Tiny())  # a custom forward: run over stacked leaves
    assert not batchable(MixesTheBatch())  # caught by comparing one forward pass with the model's own
    assert not batchable(OwnsAParameter())  # a tensor used outside any leaf
    assert not batchable(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.5), torch.nn.Linear(4, 2)),
                         (4,))  # random draws that would not be each copy's own
    resnet = build_model("resnet20", seed=0)
    before = {n: t.clone() for n, t in resnet.state_dict().items()}
    batchable(resnet)
    assert all(torch.equal(t, before[n]) for n, t in resnet.state_dict().items())  # its statistics untouched
    models = [build_model("lenet5", seed=s) for s in range(2)]
    x = torch.randn(5, 1, 28, 28)
    stacked = StackedModel(models)
    shared = stacked(x, shared=True)
    torch.testing.assert_close(shared, torch.stack([m(x) for m in models]), atol=1e-5, rtol=0)


def test_balanced_chunks():
    assert [len(c) for c in balanced_chunks(list(range(9)), 8)] == [5, 4]
    assert [len(c) for c in balanced_chunks(list(range(9)), 16)] == [9]
    assert [len(c) for c in balanced_chunks(list(range(3)), 1)] == [1, 1, 1]


FAST = ["train.steps=30it", "train.eval_every=10it", "train.checkpoint_every=20it", "lottery.levels=1",
        "lottery.baselines=[random_pruning,random_reinit,oneshot]"]


def engine_run(tmp_path, batch):
    lotteries = [Lottery.open(build_config("mlp-digits", overrides=[*FAST, f"train.batch_tickets={batch}",
                                                                      f"seeds.init={s}", f"seeds.data={s}"]), tmp_path,
                              accelerator=KERNELS)
                 for s in (0, 1)]
    return run_lotteries(lotteries)


@pytest.fixture(scope="module")
def batched_runs(tmp_path_factory):
    return engine_run(tmp_path_factory.mktemp("batched"), 16)


def test_engine_batches_seeds_and_baselines_bit_for_bit_like_separate_runs(tmp_path, one_thread):
    """2 seeds x (IMP + 3 baselines) per level: level 0 trains 2 tickets batched, level 1 trains 8; on one thread
    every file equals the unbatched run's (the summary's `batched` and wall times aside)."""
    from .test_lottery import comparable

    batched, alone = engine_run(tmp_path / "batched", 16), engine_run(tmp_path / "alone", 1)
    assert [s.root.name for s in batched] != [s.root.name for s in alone]  # batching is part of a run's identity
    for b, a in zip(batched, alone, strict=True):
        for stage, k in [("level_00", 2), ("level_01", 8), ("level_01/baselines/oneshot", 8)]:
            assert json.loads((b.root / stage / "summary.json").read_text())["batched"] == k
            assert json.loads((a.root / stage / "summary.json").read_text())["batched"] == 1
        got, want = comparable(b.root), comparable(a.root)
        for files in (got, want):
            for name, content in files.items():
                if name.endswith("summary.json"):
                    content.pop("batched")
                if name.endswith("config.json"):  # the run's own record of --batch-tickets, and its hashes
                    content["config"]["train"].pop("batch_tickets", None)
                    content["non_default"]["train"].pop("batch_tickets", None)
                    for key in ("hash", "identity"):
                        content.pop(key)
        assert got == want
        assert not list(b.root.rglob("checkpoint*.safetensors"))


def test_bad_batch_tickets_is_refused(tmp_path, capsys):
    # through `run`'s main() in this process (its real command line's errors: test_lottery.py)
    assert_user_error(main_in_process(capsys, "run", "mlp-digits", "--batch-tickets", "0", "--runs-dir", tmp_path),
                      "train.batch_tickets must be >= 1")


@pytest.mark.parametrize("where,call", [("summary", 5), ("checkpoint", 10)])
def test_engine_resumes_a_crashed_batched_run_identically(tmp_path, monkeypatch, batched_runs, where, call):
    """Crash in the middle of a level's group checkpoint, or while the group's stages are being finalised (2 of 8
    summaries written): the rerun batches the same stages together and ends with the same files, bit for bit."""
    import ticketlab.accel.batching.trainer as trainer
    import ticketlab.engine.stage_files as stage_files

    from .test_lottery import comparable

    module, name = (stage_files, "write_json_atomic") if where == "summary" else (trainer, "save_checkpoint")
    real, calls = getattr(module, name), {"n": 0}

    def crashing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, crashing)
    with pytest.raises(KeyboardInterrupt):
        engine_run(tmp_path, 16)
    monkeypatch.setattr(module, name, real)
    resumed = engine_run(tmp_path, 16)
    for got, want in zip(resumed, batched_runs, strict=True):
        assert comparable(got.root) == comparable(want.root)


def test_compiled_gradient_masking_gives_the_bits_of_torchs_multiply():
    """masked_update.MaskedUpdate and the batched trainer mask gradients on one CPU thread with a compiled loop over
    one-byte masks: bit for bit torch's multiply by the float mask (-0.0 for negative pruned gradients, NaN kept)."""
    from ticketlab.core.masked_update import mask_grad_kernel

    kernel = mask_grad_kernel()
    if kernel is None:
        pytest.skip("numba is not installed")
    g = torch.Generator().manual_seed(0)
    grad = torch.randn(1000, generator=g)
    grad[:3] = torch.tensor([float("nan"), float("inf"), -0.0])
    mask = torch.rand(1000, generator=g) < 0.3
    mask[:3] = torch.tensor([False, True, False])
    expected = grad * mask.float()
    ours = grad.clone()
    kernel(ours.numpy(), mask.to(torch.uint8).numpy())
    assert torch.equal(ours.view(torch.int32), expected.view(torch.int32))
