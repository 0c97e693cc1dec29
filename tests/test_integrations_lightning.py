"""The lottery callback inside Lightning's Trainer: a small CNN with batch norm; pruned weights stay exactly zero,
level 1 starts from the rewind point (buffers included), bad input is refused in one line."""

import copy

import pytest
import torch
from torch import nn

pytest.importorskip("lightning")

import lightning as L

from ticketlab import Masks, PruneSpec, TicketlabError, prune
from ticketlab.integrations.lightning import LotteryCallback

STEPS = 6
pytestmark = [pytest.mark.filterwarnings("ignore:.*LeafSpec.*is deprecated"),
              pytest.mark.filterwarnings("ignore:You defined a `validation_step` but have no `val_dataloader`")]


class SmallCNN(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                 nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 36, 3))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val_loss", nn.functional.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


class Probe(L.Callback):
    """Copies of the weights where the test needs them, taken independently of the callback under test."""

    def __init__(self, step: int):
        self.step, self.at_step, self.begins, self.optimizers = step, None, [], []

    def on_train_start(self, trainer, module):
        self.begins.append(copy.deepcopy(module.state_dict()))
        self.optimizers.append(trainer.optimizers[0])

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.global_step == self.step and self.at_step is None:
            self.at_step = copy.deepcopy(module.state_dict())


def loader(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.randn(64, 1, 6, 6, generator=gen), torch.randint(0, 3, (64,), generator=gen)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)


def trainer(callbacks, **options):
    return L.Trainer(max_steps=STEPS, accelerator="cpu", logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks, **options)


def small_cnn():
    torch.manual_seed(0)
    return SmallCNN()


def test_levels_keep_masks_and_start_from_the_rewind_point():
    module, probe = small_cnn(), Probe(step=2)
    cb = LotteryCallback(PruneSpec(rate=0.5), rewind=2)
    for level in cb.levels(2):
        trainer([cb, probe], gradient_clip_val=0.5).fit(module, loader(), loader(1))
        params = dict(module.named_parameters())
        for name, keep in cb.masks.items():
            assert not params[name][~keep].any(), name
            state = probe.optimizers[-1].state[params[name]]  # pruned gradients zeroed before clipping and update
            assert not state["exp_avg"][~keep].any(), name
        if level == 0:
            masks_1 = prune(module, Masks.ones(module, names=list(cb.masks)), cb.spec)
    assert [(row["level"], row["steps"]) for row in cb.history] == [(0, STEPS), (1, STEPS), (2, STEPS)]
    assert [row["density"] for row in cb.history] == [1.0, 0.5, 0.25]
    assert all({"val_loss", "val_acc", "train_loss"} <= set(row["metrics"]) for row in cb.history)

    theta_k, start_1 = probe.at_step, probe.begins[1]
    for name, value in start_1.items():  # weights, biases and batch-norm statistics: θk; pruned weights: 0
        want = theta_k[name] * masks_1[name] if name in masks_1 else theta_k[name]
        assert torch.equal(value, want), name
    assert not torch.equal(theta_k["net.1.running_mean"], probe.begins[0]["net.1.running_mean"])


def test_a_saved_callback_goes_on_in_a_new_trainer_and_module(tmp_path):
    """Level 0 trained and saved; loaded into a new module of other weights (as another process would): a
    LotteryCallback whose level 1 starts from the same masks and weights as the original's would."""
    module, cb, path = small_cnn(), LotteryCallback(PruneSpec(rate=0.5), rewind=2), tmp_path / "cycle.safetensors"
    for _ in cb.levels(0):
        trainer([cb]).fit(module, loader(), loader(1))
    cb.save(path)
    cb.next_level()
    torch.manual_seed(5)
    other = SmallCNN()
    loaded = LotteryCallback.load(path, other)
    assert isinstance(loaded, LotteryCallback)
    probe = Probe(step=1)
    for level in loaded.levels(1):
        assert level == 1 and loaded.masks == cb.masks
        trainer([loaded, probe]).fit(other, loader(), loader(1))
    assert all(torch.equal(t, module.state_dict()[n]) for n, t in probe.begins[0].items())
    assert [(row["level"], row["density"]) for row in loaded.history] == [(0, 1.0), (1, 0.5)]


def test_a_trainer_used_for_two_levels_is_refused():
    module, cb = small_cnn(), LotteryCallback(PruneSpec(rate=0.2))
    levels = cb.levels(1)
    next(levels)
    used = trainer([cb])
    used.fit(module, loader())
    next(levels)
    with pytest.raises(TicketlabError, match=f"already trained {STEPS} steps: make a new Trainer for each level"):
        used.fit(module, loader())


@pytest.mark.parametrize("spec, rewind, needle", [
    (PruneSpec(exclude=("encoder.*",)), "init", "'encoder.*' matches no prunable parameter of SmallCNN"),
    (PruneSpec(), STEPS, f"rewind step {STEPS} is beyond the {STEPS} training steps of level 0"),
])
def test_bad_input_is_refused_before_training(spec, rewind, needle):
    module = small_cnn()
    before = copy.deepcopy(module.state_dict())
    with pytest.raises(TicketlabError) as error:
        trainer([LotteryCallback(spec, rewind=rewind)]).fit(module, loader())
    assert needle in str(error.value) and "\n" not in str(error.value)
    assert all(torch.equal(before[n], t) for n, t in module.state_dict().items())
