"""Masked training: pruned weights stay exactly zero whatever the optimizer; schedules; early stop; divergence."""

import json
import tempfile
from pathlib import Path

import hypothesis
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from ticketlab.core.files import load_tensors
from ticketlab.core.masks import Masks
from ticketlab.core.pruning import PruneSpec, prune
from ticketlab.data import InMemory, Splits
from ticketlab.engine.accelerator import Ticket
from ticketlab.engine.bookkeeping import Bookkeeping
from ticketlab.engine.config import TrainConfig
from ticketlab.engine.schedule import Plan, lr_schedule, make_plan
from ticketlab.engine.training import Diverged, early_stop, train
from ticketlab.errors import TicketlabError

from .conftest import Tiny


def tiny_splits(seed=0, n=120):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 6, 6, generator=g)
    y = (x.mean(dim=(1, 2, 3)) > 0).long() + (x[:, 0, 0, 0] > 0).long()
    part = lambda a, b: InMemory(x[a:b], y[a:b])  # noqa: E731
    return Splits(part(0, 80), part(80, 100), part(100, 120), num_classes=3, input_shape=(1, 6, 6), name="tiny")


def pruned_tiny():
    torch.manual_seed(0)
    model = Tiny()
    with torch.no_grad():  # small negative weights (pruned) and large negative ones (kept)
        model.fc1.weight[0, :10] = -1e-4
        model.fc1.weight[1, :10] = -5.0
    masks = prune(model, Masks.ones(model), PruneSpec(rate=0.6, scope="global"))
    return model, masks


@pytest.mark.parametrize("optimizer,momentum,wd", [("sgd", 0.9, 5e-2), ("adam", 0.0, 1e-2), ("adamw", 0.0, 0.1)])
def test_pruned_weights_stay_exactly_zero(tmp_path, optimizer, momentum, wd):
    model, masks = pruned_tiny()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    cfg = TrainConfig(steps="40it", optimizer=optimizer, lr=0.05, momentum=momentum, weight_decay=wd,
                      eval_every="20it", checkpoint_every="20it")
    splits = tiny_splits()
    train(model, masks, splits, cfg, make_plan(cfg, 80, 16, 0), tmp_path)
    params = dict(model.named_parameters())
    for n, m in masks.items():
        assert (params[n][~m] == 0).all(), n  # exactly zero, never revived
        assert not torch.equal(params[n][m], before[n][m])  # the kept weights did train
    assert not masks["fc1.weight"][0, :10].any() and masks["fc1.weight"][1, :10].all()  # ranked by |w|


def test_same_seeds_same_numbers(tmp_path):
    cfg = TrainConfig(steps="30it", eval_every="10it")
    runs = []
    for i in range(2):
        model, masks = pruned_tiny()
        rows = train(model, masks, tiny_splits(), cfg, make_plan(cfg, 80, 16, data_seed=3), tmp_path / str(i))
        runs.append([{k: v for k, v in r.items() if k != "wall"} for r in rows])
    assert runs[0] == runs[1]


def test_schedules():
    cfg = TrainConfig(lr=1.0, schedule="step", milestones=["10it", "20it"], gamma=0.1, warmup="4it")
    lr = lr_schedule(cfg, total=30, spe=5)
    assert [round(lr(s), 6) for s in (0, 3, 9, 10, 25)] == [0.25, 1.0, 1.0, 0.1, 0.01]
    cos = lr_schedule(TrainConfig(lr=2.0, schedule="cosine"), total=10, spe=5)
    assert cos(0) == 2.0 and cos(5) == pytest.approx(1.0) and cos(10) == pytest.approx(0.0, abs=1e-12)
    assert make_plan(TrainConfig(steps="3ep"), n_train=100, batch_size=30, data_seed=0).total == 12


def test_early_stop_statistic():
    rows = [{"step": 0, "val_loss": 2.0, "test_acc": 0.1, "val_acc": 0.1},
            {"step": 10, "val_loss": 0.5, "test_acc": 0.8, "val_acc": 0.8},
            {"step": 20, "val_loss": 0.7, "test_acc": 0.85, "val_acc": 0.82}]
    stats = early_stop(rows)
    assert (stats["early_stop_step"], stats["early_stop_test_acc"]) == (10, 0.8)
    assert (stats["final_test_acc"], stats["best_test_acc"]) == (0.85, 0.85)


def test_divergence_stops_with_clear_message_and_keeps_metrics(tmp_path):
    model, masks = pruned_tiny()
    cfg = TrainConfig(steps="50it", optimizer="sgd", lr=1e6, eval_every="1it")
    with pytest.raises(Diverged, match="loss became (nan|inf)|mean training loss above"):
        train(model, masks, tiny_splits(), cfg, make_plan(cfg, 80, 16, 0), tmp_path)
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") >= 1


def without_wall(rows):
    return [{k: v for k, v in r.items() if k != "wall"} for r in rows]


ROW_KEYS = ["step", "epoch", "train_loss", "val_loss", "val_acc", "test_loss", "test_acc", "lr", "wall"]


def test_a_killed_stage_resumes_with_the_rows_and_weights_of_an_uninterrupted_one(tmp_path):
    """Killed after step 7: the checkpoint is at step 4, the row at step 6 is dropped and written again; the
    train-loss sums of steps 4..6 come partly from the checkpoint."""
    cfg = TrainConfig(steps="12it", optimizer="adam", lr=1e-2, eval_every="3it", checkpoint_every="4it")

    def run(stage, snapshot=None):
        model, masks = pruned_tiny()
        return model, train(model, masks, tiny_splits(), cfg, make_plan(cfg, 80, 16, 0), stage, snapshot=snapshot)

    model, rows = run(tmp_path / "whole")

    def killed(_):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "killed", snapshot=(7, killed))
    assert [r["step"] for r in map(json.loads, (tmp_path / "killed/metrics.jsonl").read_text().splitlines())] == [
        0, 3, 6]
    extra = json.loads(load_tensors(tmp_path / "killed/checkpoint.safetensors")[1]["extra"])
    assert list(extra) == ["step", "loss_sum", "loss_count", "wall"] and extra["step"] == 4
    resumed, resumed_rows = run(tmp_path / "killed")
    assert [list(r) for r in resumed_rows] == [ROW_KEYS] * 5 and [r["step"] for r in rows] == [0, 3, 6, 9, 12]
    assert without_wall(resumed_rows) == without_wall(rows)
    assert resumed_rows == [json.loads(line) for line in (tmp_path / "killed/metrics.jsonl").read_text().splitlines()]
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), resumed.parameters(), strict=True))


def books_for(root: Path, k: int, total: int, eval_every: int, checkpoint_every: int) -> list[Ticket]:
    plan = Plan(total=total, steps_per_epoch=5, batch_size=1, data_seed=0, lr=lambda step: 0.1 / (step + 1),
                eval_every=eval_every, checkpoint_every=checkpoint_every)
    return [Ticket(None, None, None, plan, root / f"stage{i}", desc=f"copy {i}") for i in range(k)]


def keep_books(tickets, losses: torch.Tensor, extras=None, kill_at=None, ids=None):
    """What a trainer does with its books, without the training: `losses` (steps, K); K=1 adds floats, as `train`
    does; `ids` number the stages for their evaluations. Returns (rows, the extras of the last checkpoint)."""
    k = len(tickets)
    ids = ids or range(k)
    for t in tickets:
        t.stage.mkdir(parents=True, exist_ok=True)
    book = Bookkeeping(tickets, extras or [None] * k)

    def evaluate():  # each stage's own numbers, a function of the step
        return [(book.step / (i + 1), i / 4) for i in ids], [(book.step + i, 0.5) for i in ids]

    rows, saved = book.open(evaluate), extras
    while book.step < tickets[0].plan.total and book.step != kill_at:
        book.check(losses[book.step])
        book.add(losses[book.step] if k > 1 else losses[book.step, 0].item())
        if book.evaluates():
            book.log(evaluate)
        if book.checkpoints():
            saved = [json.loads(json.dumps(book.extra(i))) for i in range(k)]  # as a checkpoint stores it
    return rows, saved


@hypothesis.settings(max_examples=40, deadline=None)
@given(k=st.integers(1, 3), total=st.integers(1, 25), eval_every=st.integers(1, 7), checkpoint_every=st.integers(1, 7),
       kill_at=st.integers(1, 25), seed=st.integers(0, 2**16))
def test_books_of_k_stages_are_those_of_each_alone_and_resume_as_if_uninterrupted(k, total, eval_every,
                                                                                  checkpoint_every, kill_at, seed):
    """The one bookkeeping of `train` (one stage, float losses) and the batched trainer (K stages, a tensor): K
    stages kept together get each the rows of a stage kept alone, with the same float bits; killed at any step and
    resumed from the last checkpoint, the rows and metrics files are those of an uninterrupted run."""
    losses = torch.rand(total, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 3
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        together, _ = keep_books(books_for(root / "together", k, total, eval_every, checkpoint_every), losses)
        for i in range(k):
            alone, _ = keep_books(books_for(root / f"alone{i}", 1, total, eval_every, checkpoint_every),
                                  losses[:, i : i + 1], ids=[i])
            assert without_wall(alone[0]) == without_wall(together[i])
        tickets = books_for(root / "killed", k, total, eval_every, checkpoint_every)
        _, extras = keep_books(tickets, losses, kill_at=kill_at)
        resumed, _ = keep_books(tickets, losses, extras=extras)
        for i, t in enumerate(tickets):
            assert without_wall(resumed[i]) == without_wall(together[i])
            assert [list(r) for r in resumed[i]] == [ROW_KEYS] * len(resumed[i])
            assert resumed[i] == [json.loads(line) for line in (t.stage / "metrics.jsonl").read_text().splitlines()]
        steps = [r["step"] for r in together[0]]
        assert steps == sorted({0, total, *range(eval_every, total, eval_every)})
        assert together[0][0]["train_loss"] is None and all(r["train_loss"] is not None for r in together[0][1:])


def test_books_name_the_first_stage_whose_loss_is_not_finite(tmp_path):
    tickets = books_for(tmp_path, 3, 10, 2, 4)
    book = Bookkeeping(tickets, [None] * 3)
    book.check(torch.tensor([0.5, 1.0, 2.0]))
    with pytest.raises(Diverged, match=r"^loss became inf at step 0 \(copy 1\); lower train.lr or check the data; "
                                        r"results so far are kept in .*stage1$"):
        book.check(torch.tensor([0.5, float("inf"), float("nan")]))


def test_cifar_augmentation_is_a_seeded_crop_and_flip():
    from ticketlab.data.augment import crop_and_flip

    x = torch.randn(64, 3, 32, 32)
    a = crop_and_flip(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, crop_and_flip(x, torch.Generator().manual_seed(1)))
    assert a.shape == x.shape and not torch.equal(a, x)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(8):  # every output is some 32x32 window of the padded image, flipped or not
        windows = padded[i].unfold(1, 32, 1).unfold(2, 32, 1).permute(1, 2, 0, 3, 4)  # (9, 9, C, 32, 32)
        hits = (windows == a[i]).all(dim=(2, 3, 4)).any() | (windows == a[i].flip(2)).all(dim=(2, 3, 4)).any()
        assert hits


def test_absent_device_and_fp16_on_cpu_are_refused(tmp_path):
    model, masks = pruned_tiny()
    for settings, match in [({"device": "cuda:7"}, "is absent"), ({"precision": "fp16"}, "needs a CUDA device")]:
        cfg = TrainConfig(steps="2it", **settings)
        with pytest.raises(TicketlabError, match=match):
            train(model, masks, tiny_splits(), cfg, make_plan(cfg, 80, 16, 0), tmp_path)


def test_bf16_autocast_and_channels_last_train_on_cpu(tmp_path):
    model, masks = pruned_tiny()
    cfg = TrainConfig(steps="10it", precision="bf16", channels_last=True, eval_every="10it")
    rows = train(model, masks, tiny_splits(), cfg, make_plan(cfg, 80, 16, 0), tmp_path)
    assert rows[-1]["step"] == 10 and all(torch.isfinite(torch.tensor(r["val_loss"])) for r in rows)
    params = dict(model.named_parameters())
    assert all((params[n][~m] == 0).all() for n, m in masks.items())


def masked_kernel_or_fail():
    """The masked Adam kernel, or None; a failure where it should have built (a C++ compiler, the torch it mirrors)."""
    import shutil

    from ticketlab.accel import masked_adam

    should = shutil.which("c++") and torch.__version__.startswith(masked_adam.TORCH_MIRRORED)
    if should and masked_adam.kernel() is None:
        pytest.fail("a C++ compiler is here but the masked Adam kernel did not build")
    return masked_adam.kernel()


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_kept_optimizer_same_bits_as_masked_whole_tensor_step(name, threads, monkeypatch):
    """KeptOptimizer against fused Adam over whole tensors with masked gradients: on one thread compacting the kept
    entries (padded to KEPT_PAD), on two through the masked Adam kernel. The same weight bits and the same
    state_dict; a state_dict loaded into a fresh one continues alike."""
    from torch import nn

    from ticketlab.accel import masked_adam
    from ticketlab.accel.kept_optimizer import KeptOptimizer
    from ticketlab.engine.optimizers import make_optimizer

    masked_kernel_or_fail()
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)  # compactable's rule reads it
    torch.set_num_threads(threads)
    cfg = TrainConfig(optimizer=name, weight_decay=1e-2, lr=1e-2)
    g = torch.Generator().manual_seed(0)
    # d, e: lengths not a multiple of 16 (not compacted; the kernel's scalar tail); e: several chunks per thread
    shapes = {"a": (32, 24), "b": (48,), "c": (5, 3), "d": (61,), "e": (300, 97)}

    def fresh():
        model = nn.ParameterDict({k: nn.Parameter(torch.randn(s, generator=torch.Generator().manual_seed(1)))
                                  for k, s in shapes.items()})
        masks = Masks({"a": torch.rand(shapes["a"], generator=torch.Generator().manual_seed(2)) < 0.3,
                       "b": torch.rand(shapes["b"], generator=torch.Generator().manual_seed(3)) < 0.5,
                       "c": torch.ones(shapes["c"], dtype=torch.bool),
                       "d": torch.rand(shapes["d"], generator=torch.Generator().manual_seed(4)) < 0.5,
                       "e": torch.rand(shapes["e"], generator=torch.Generator().manual_seed(5)) < 0.2})
        masks.apply(model)
        return model, masks

    whole, masks = fresh()
    kept_model, _ = fresh()
    reference, kept = make_optimizer(whole.parameters(), cfg), KeptOptimizer.for_model(kept_model, masks, cfg)
    expected = {"a", "b", "d", "e"} if masked_adam.kernel() else {"a", "b"} if threads == 1 else set()
    assert kept.names == expected
    # the kernel steps the unpruned "c" too, beside the masked tensors; on one thread the inner step the compact ones
    assert len(kept.by_kernel) == ({1: 3, 2: 5}[threads] if masked_adam.kernel() else 0)

    def step(model, opt, grads):
        for p, grad in zip(model.values(), grads, strict=True):
            p.grad = grad.clone()
        for k, p in model.items():  # what MaskedUpdate does for the tensors KeptOptimizer leaves whole
            if opt is reference or k not in kept.names:
                p.grad.mul_(masks[k])
        opt.step()

    for i in range(12):
        grads = [torch.randn(s, generator=g) * 10 ** (i % 4 - 2) for s in shapes.values()]
        step(whole, reference, grads)
        step(kept_model, kept, grads)
        if i == 6:  # a resume: model then optimizer, as store.load_checkpoint does
            resumed_model, _ = fresh()
            resumed_model.load_state_dict(kept_model.state_dict())
            resumed = KeptOptimizer.for_model(resumed_model, masks, cfg)
            resumed.load_state_dict(kept.state_dict())
            kept_model, kept = resumed_model, resumed
    for k in shapes:
        assert torch.equal(whole[k].detach().view(torch.int32), kept_model[k].detach().view(torch.int32))
    ours, theirs = kept.state_dict()["state"], reference.state_dict()["state"]
    for i in theirs:
        for key in theirs[i]:
            assert torch.equal(ours[i][key], theirs[i][key]), (i, key, (ours[i][key] - theirs[i][key]).abs().max())
    torch.set_num_threads(1)


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_masked_adam_kernel_trains_bit_for_bit_as_masking_then_stepping(tmp_path, monkeypatch, optimizer):
    """Two threads, so no compaction: `train` with the masked Adam kernel against `train` with it switched off
    (gradients masked in a separate pass, then torch's fused step): the same weight and checkpoint bits."""

    from ticketlab.accel import KERNELS, masked_adam
    from ticketlab.accel.kept_optimizer import KeptOptimizer

    masked_kernel_or_fail()
    cfg = TrainConfig(steps="12it", optimizer=optimizer, lr=1e-2, weight_decay=1e-3, eval_every="6it",
                      checkpoint_every="6it")
    finals, losses, kernel_masks = {}, {}, {}
    torch.set_num_threads(2)
    try:
        for switch in ("0", "1"):
            monkeypatch.setenv("TICKETLAB_NO_COMPILE", switch)
            masked_adam.kernel.cache_clear()
            model, masks = pruned_tiny()
            kernel_masks[switch] = KeptOptimizer.for_model(model, masks, cfg).names
            rows = train(model, masks, tiny_splits(), cfg, make_plan(cfg, 80, 16, 0), tmp_path / switch,
                         accelerator=KERNELS)
            finals[switch] = {n: p.detach().clone() for n, p in model.named_parameters()}
            losses[switch] = [(r["train_loss"], r["val_loss"]) for r in rows]
    finally:
        torch.set_num_threads(1)
        masked_adam.kernel.cache_clear()
    assert kernel_masks["0"] == set(masks) and kernel_masks["1"] == set()  # the two runs took the two paths
    for name, weights in finals["0"].items():
        assert torch.equal(weights.view(torch.int32), finals["1"][name].view(torch.int32)), name
    assert losses["0"] == losses["1"]
