"""The vision rows of Table 2 end to end at smoke size: lenet5-mnist, conv6-cifar10 and resnet50-cifar10 on tiny
data written in the official formats (MNIST IDX, CIFAR-10 python batches), resume, `ticketlab report` and
`ticketlab table2` through the real CLI; the CIFAR ResNets' exact sizes; classes always taken from the data."""

import json
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ticketlab.core.files import read_json
from ticketlab.core.masks import prunable_names
from ticketlab.data import DATASETS, InMemory, Source, load_dataset
from ticketlab.data.augment import AUGMENTATIONS, CIFAR10_BLACK, crop_and_flip
from ticketlab.data.normalise import CIFAR10_STATS
from ticketlab.engine.lottery import Lottery, model_for
from ticketlab.engine.presets import PRESETS, build_config, load_preset
from ticketlab.errors import TicketlabError
from ticketlab.models import build_model
from ticketlab.paper.table2 import PAPER, changed_settings, format_table2, table2

from .conftest import assert_user_error, file_stamps, main_in_process, run_clis
from .test_data import write_cifar_dir, write_idx_dir

SMOKE = {  # a few steps, tiny levels; everything else is the preset's
    # The official 5,000-image validation split does not fit in tiny CIFAR data: these runs hold out 2.
    "conv6-cifar10": ["train.steps=4it", "train.eval_every=2it", "train.checkpoint_every=2it", "lottery.levels=1",
                      "data.batch_size=4", "data.val_size=2"],
    # ResNet-50 at 32x32 is heavy on a CPU: batch 2, 2 steps, one level; rewinding to step 1 (the preset's 3ep is
    # longer than the whole smoke run).
    "resnet50-cifar10": ["train.steps=2it", "train.eval_every=2it", "train.checkpoint_every=100it",
                         "lottery.levels=1", "lottery.rewind=1it", "data.batch_size=2", "data.val_size=2"],
    # Through the CLI with the official 5,000-image validation split: every evaluation reads 5,000 images.
    "lenet5-mnist": ["train.steps=2it", "train.eval_every=2it", "train.checkpoint_every=1it", "lottery.levels=1",
                     "data.batch_size=4"],
}
VISION = ("lenet5-mnist", "conv6-cifar10", "resnet50-cifar10")


def run_dir(runs, preset):
    [path] = [p.parent for p in runs.glob("*/config.json") if read_json(p)["preset"] == preset]
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_cifar_dir(root / "cifar-10-batches-py", n=2)  # 10 training, 2 test images
    # MNIST with room for the official 5,000-image validation split, so the CLI runs the preset's data unchanged.
    write_idx_dir(root / "mnist", gz=True, n_train=5008, n_test=8)
    return root


def run_everything(runs, data) -> None:
    """conv6 and ResNet-50 in process (data.val_size=2), LeNet-5 through the CLI at the same time (its own
    process, its own run directory: the second core), all in one runs directory."""
    lenet5 = subprocess.Popen([sys.executable, "-m", "ticketlab.cli", "run", "lenet5-mnist", "--runs-dir", str(runs),
                               "--quiet", "--set", f"data.root={data}",
                               *[a for o in SMOKE["lenet5-mnist"] for a in ("--set", o)]],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for preset in ("conv6-cifar10", "resnet50-cifar10"):
            Lottery.open(build_config(preset, overrides=[*SMOKE[preset], f"data.root={data}"]), runs, preset).run()
        _, err = lenet5.communicate(timeout=600)
    finally:
        if lenet5.poll() is None:  # the in-process runs failed: stop ours
            lenet5.kill()
            lenet5.wait()
    assert lenet5.returncode == 0, err


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data):
    runs = tmp_path_factory.mktemp("runs")
    run_everything(runs, data)
    return runs


# ---- end to end ----

@pytest.mark.parametrize("preset", VISION)
def test_every_level_and_baseline_finishes_with_the_preset_recorded(runs, preset):
    root = run_dir(runs, preset)
    meta = read_json(root / "config.json")
    assert meta["preset"] == preset
    cfg = build_config(preset, overrides=SMOKE[preset])
    for level in range(cfg.lottery.levels + 1):
        summary = read_json(root / f"level_{level:02d}" / "summary.json")
        assert summary["status"] == "done" and 0.0 <= summary["early_stop_test_acc"] <= 1.0
        for name in cfg.lottery.baselines if level else []:
            assert (root / f"level_{level:02d}" / "baselines" / name / "summary.json").is_file()


def test_conv6_prunes_conv_15_fc_20_output_10_percent_per_level(runs):
    density = read_json(run_dir(runs, "conv6-cifar10") / "level_01" / "summary.json")["layer_density"]
    expected = {**{f"conv{i}.weight": 0.85 for i in range(1, 7)}, "fc1.weight": 0.8, "fc2.weight": 0.8,
                "fc3.weight": 0.9}
    assert density.keys() == expected.keys()
    for name, value in expected.items():
        assert density[name] == pytest.approx(value, abs=2e-3), name


def test_lenet5_prunes_conv_10_fc_20_output_10_percent(runs):
    density = read_json(run_dir(runs, "lenet5-mnist") / "level_01" / "summary.json")["layer_density"]
    assert density == pytest.approx({"conv1.weight": 0.9, "conv2.weight": 0.9, "fc1.weight": 0.8, "fc2.weight": 0.9},
                                    abs=2e-3)


def test_resnet50_prunes_20_percent_globally_and_rewinds_late(runs):
    root = run_dir(runs, "resnet50-cifar10")
    summary = read_json(root / "level_01" / "summary.json")
    assert summary["density"] == pytest.approx(0.8, abs=1e-6)
    assert summary["prunable"] == 23_467_712 and summary["params_total"] == 23_520_842
    assert len(set(summary["layer_density"].values())) > 1  # one global threshold, not 20% of every layer
    assert (root / "rewind.safetensors").is_file() and summary["steps"] == 1  # trains from θ1 to step 2
    assert read_json(root / "config.json")["config"]["data"]["augment"] == "cifar"


def test_resume_trains_nothing(runs, data, monkeypatch):
    before = file_stamps(runs)
    monkeypatch.setattr("ticketlab.engine.stages.train", lambda *a, **k: pytest.fail("a finished stage trained again"))
    run_everything(runs, data)
    assert file_stamps(runs) == before


@pytest.fixture(scope="module")
def reported(runs, tmp_path_factory):
    """`report` and `table2 --json` on the runs through the real command, started together: (report, its folder,
    table2)."""
    out = tmp_path_factory.mktemp("report")
    report, table = run_clis(["report", runs, "--out", out], ["table2", "--runs-dir", runs, "--json"])
    return report, out, table


def test_report_cli_puts_the_papers_figures_beside_ours(reported):
    result, out, _ = reported
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("paper (%)") == 3
    for preset in VISION:
        paper = PAPER[preset]
        assert f"{paper.before:.2f}" in result.stdout and f"{paper.after:.2f}" in result.stdout
    md = (out / "report.md").read_text()
    assert md.count("Paper (the talk's Table 2") == 3 and md.count("not the published setup") == 3
    assert "Frankle & Carbin's MNIST network is LeNet-300-100" in md


def test_table2_cli_json_aggregates_level0_and_the_best_level(runs, reported):
    result = reported[2]
    assert result.returncode == 0, result.stderr
    rows = {row["preset"]: row for row in json.loads(result.stdout)}
    assert list(rows) == list(PAPER)
    for preset in VISION:
        [ours] = rows[preset]["ours"]
        root = run_dir(runs, preset)
        level0 = read_json(root / "level_00" / "summary.json")
        assert ours["dense"]["mean"] == pytest.approx(100 * level0["early_stop_test_acc"])
        levels = build_config(preset, overrides=SMOKE[preset]).lottery.levels
        accs = {lv: read_json(root / f"level_{lv:02d}" / "summary.json")["early_stop_test_acc"]
                for lv in range(1, levels + 1)}
        best = max(accs, key=lambda lv: (accs[lv], -lv))
        assert ours["ticket_level"] == best and ours["ticket"]["mean"] == pytest.approx(100 * accs[best])
        assert not ours["published_setup"] and ours["changed"]["train.steps"] in ("2it", "4it")
        assert "data.root" not in ours["changed"]
    assert rows["bert-mnli"]["ours"] == [] and rows["bert-mnli"]["command"].startswith("ticketlab run bert-mnli")
    assert f"--runs-dir {runs}" in rows["gcn-cora"]["command"]


def test_table2_text_names_the_command_for_empty_cells(runs, tmp_path):
    text = format_table2(table2(runs), runs)
    assert "none; to produce: ticketlab run resgcn28-cora --set data.root=DIR" in text
    assert "changed from the preset: " in text and "not the published setup" in text
    empty = format_table2(table2(tmp_path / "absent"), tmp_path / "absent")  # no runs yet: the paper's figures
    assert empty.count("none; to produce") == len(PAPER) and "77.52" in empty and "94.82" in empty


# ---- presets and the paper's table ----

def test_paper_table_holds_the_talks_five_rows():
    """The talk's five rows, and the Fashion-MNIST stand-ins marked as such with the MNIST row's figures."""
    stand_ins = [PAPER["lenet300-fashion-mnist"], PAPER["lenet5-fashion-mnist"]]
    assert all("stand-in" in p.dataset and (p.before, p.after) == (98.05, 98.41) for p in stand_ins)
    rows = {(p.network, p.dataset, p.before, p.after) for p in PAPER.values() if p not in stand_ins}
    assert rows == {("LeNet-5", "MNIST", 98.05, 98.41), ("Conv-6", "CIFAR-10", 77.52, 80.02),
                    ("ResNet-50", "CIFAR-10", 94.31, 94.82), ("ResGCN-28", "Cora", 80.02, 81.88),
                    ("BERT", "MNLI", 82.39, 83.08)}
    assert {"lenet5-mnist", "conv6-cifar10", "resnet50-cifar10", "resgcn28-cora", "gcn-cora", "bert-mnli"} <= set(PAPER)
    assert "LeNet-300-100" in PAPER["lenet5-mnist"].note


def test_vision_presets_hold_the_published_setups():
    conv6 = load_preset("conv6-cifar10")
    assert (conv6.model.name, conv6.data.batch_size, conv6.data.augment) == ("conv6", 60, "none")
    assert (conv6.train.optimizer, conv6.train.lr, conv6.train.steps) == ("adam", 3e-4, "30000it")
    assert (conv6.prune.scope, conv6.prune.rate) == ("layer", 0.2)
    assert conv6.prune.rates == {"conv*": 0.15, "fc3.weight": 0.1}
    r50 = load_preset("resnet50-cifar10")
    assert (r50.model.name, r50.data.batch_size, r50.data.augment) == ("resnet50-cifar", 128, "cifar")
    assert (r50.train.optimizer, r50.train.lr, r50.train.momentum, r50.train.schedule) == ("sgd", 0.1, 0.9, "step")
    assert r50.train.weight_decay in (1e-4, 5e-4) and (r50.prune.scope, r50.prune.rate) == ("global", 0.2)
    lenet5 = load_preset("lenet5-mnist")
    assert (lenet5.model.name, lenet5.data.name, lenet5.train.lr, lenet5.train.steps) == (
        "lenet5", "mnist", 1.2e-3, "50000it")


def test_a_run_with_the_presets_settings_is_the_published_setup():
    config = build_config("conv6-cifar10", overrides=["data.root=/somewhere", "train.checkpoint_every=5it",
                                                      "seeds.init=3"]).to_dict()
    assert changed_settings(config, "conv6-cifar10") == {}
    assert changed_settings({**config, "train": {**config["train"], "lr": 0.1}}, "conv6-cifar10") == {"train.lr": 0.1}


# ---- models ----

@pytest.mark.parametrize(("name", "options", "total", "prunable"), [
    ("resnet18-cifar", {}, 11_173_962, 11_164_352),
    ("resnet50-cifar", {}, 23_520_842, 23_467_712),
    ("resnet56", {}, 855_770, 851_504),  # OpenLTH-style 1x1-conv shortcuts
    ("resnet56", {"shortcut": "pad"}, 853_018, 848_944),  # He et al.'s option A: 0.85M
    ("resnet50", {}, 25_557_032, 25_502_912),  # the ImageNet stem is unchanged
])
def test_exact_parameter_counts(name, options, total, prunable):
    params = dict(build_model(name, device="meta", **options).named_parameters())
    assert sum(p.numel() for p in params.values()) == total
    assert sum(params[n].numel() for n in prunable_names(build_model(name, device="meta", **options))) == prunable


@pytest.mark.parametrize(("name", "last_stage"), [("resnet18-cifar", (512, 4, 4)), ("resnet50-cifar", (2048, 4, 4)),
                                                  ("resnet50", (2048, 7, 7))])
def test_cifar_stem_keeps_4x4_maps_in_the_last_stage(name, last_stage):
    model = build_model(name, device="meta")
    seen = []
    model.layer4.register_forward_hook(lambda m, i, out: seen.append(tuple(out.shape[1:])))
    model(torch.empty(2, *model.input_shape, device="meta"))
    assert seen == [last_stage]
    assert model.conv1.stride == ((1, 1) if name.endswith("cifar") else (2, 2))


def test_resnet56_has_nine_blocks_per_stage():
    model = build_model("resnet56", device="meta")
    assert len(model.blocks) == 27 and model.input_shape == (3, 32, 32)


# ---- classes come from the data, inputs must fit ----

@pytest.fixture
def hundred_classes(monkeypatch):
    monkeypatch.setattr(DATASETS, "_entries", dict(DATASETS._entries))

    @DATASETS.register("cifar100-shaped")
    def cifar100_shaped(root):
        g = torch.Generator().manual_seed(0)
        y = torch.arange(300) % 100
        return Source(InMemory(torch.randn(200, 3, 32, 32, generator=g), y[:200]),
                      InMemory(torch.randn(100, 3, 32, 32, generator=g), y[200:]), num_classes=100, val_size=100)

    return load_dataset("cifar100-shaped")


@pytest.mark.parametrize("model", ["conv6", "resnet56", "resnet18-cifar", "vgg16-cifar"])
def test_a_hundred_class_dataset_builds_a_hundred_class_head(hundred_classes, model):
    cfg = build_config("resnet50-cifar10", overrides=[f"model.name={model}", "data.name=cifar100-shaped"])
    net = model_for(cfg, hundred_classes, seed=0)
    assert net(hundred_classes.test.x[:2]).shape == (2, 100)


def test_mnist_images_into_a_cifar_net_are_refused(data):
    cfg = build_config("lenet5-mnist", overrides=["model.name=resnet18-cifar", f"data.root={data}"])
    with pytest.raises(TicketlabError, match="takes input"):
        Lottery.open(cfg, data / "refused")


def test_missing_cifar_files_name_the_file_and_the_fetch_command(tmp_path, capsys):
    # through `run`'s main() in this process (its real command line's errors: test_lottery.py)
    result = main_in_process(capsys, "run", "resnet50-cifar10", "--runs-dir", tmp_path / "runs", "--set",
                             f"data.root={tmp_path}")
    assert_user_error(result, "cifar-10-batches-py", "ticketlab data fetch cifar10 --dir")


def test_an_absent_device_is_refused_before_anything_is_written(tmp_path, data):
    cfg = build_config("conv6-cifar10", overrides=["train.device=cuda:7", f"data.root={data}"])
    with pytest.raises(TicketlabError, match="absent"):
        Lottery.open(cfg, tmp_path)
    assert not any(tmp_path.iterdir())


# ---- CIFAR augmentation ----

@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 6), h=st.integers(1, 12), w=st.integers(1, 12), seed=st.integers(0, 2**31 - 1))
def test_crop_and_flip_keeps_shape_and_takes_a_window_of_the_padded_image(n, h, w, seed):
    x = torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(seed))
    out = AUGMENTATIONS.get("cifar")(x, torch.Generator().manual_seed(seed))
    assert out.shape == x.shape and out.dtype == x.dtype and out.is_contiguous()
    border = torch.tensor(CIFAR10_BLACK).view(3, 1, 1).expand(3, h + 8, w + 8).clone()
    for i in range(n):
        padded = border.clone()
        padded[:, 4 : 4 + h, 4 : 4 + w] = x[i]
        windows = padded.unfold(1, h, 1).unfold(2, w, 1).permute(1, 2, 0, 3, 4)  # (9, 9, 3, h, w)
        hit = (windows == out[i]).all(dim=(2, 3, 4)) | (windows == out[i].flip(2)).all(dim=(2, 3, 4))
        assert hit.any()


def test_cifar_padding_is_black_after_standardisation():
    black = torch.zeros(1, 3, 32, 32)  # a black image, standardised like the loader does
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in CIFAR10_STATS)
    standardised = (black - mean) / std
    out = AUGMENTATIONS.get("cifar")(standardised.expand(64, 3, 32, 32), torch.Generator().manual_seed(0))
    assert torch.allclose(out, standardised.expand(64, 3, 32, 32))  # the border is indistinguishable from black


def test_crop_offsets_and_flips_cover_the_whole_range():
    n = 4096
    x = (torch.arange(32 * 32, dtype=torch.float32) + 1).view(1, 1, 32, 32).expand(n, 1, 32, 32).contiguous()
    out = crop_and_flip(x, torch.Generator().manual_seed(0), padding=4)[:, 0]
    centre = 1 + 16 * 32 + 16  # pixel (16, 16) survives every crop: it lands at rows and columns 12..20
    pos = (out == centre).flatten(1).float().argmax(1)
    rows, cols = pos // 32, pos % 32
    flipped = out[torch.arange(n), rows, cols + 1] == centre - 1  # its right neighbour was on its left
    assert ((rows >= 12) & (rows <= 20) & (cols >= 11) & (cols <= 20)).all()
    assert 0.45 < flipped.float().mean() < 0.55
    combos = set(zip(rows.tolist(), cols.tolist(), flipped.tolist(), strict=True))
    assert len(combos) == 9 * 9 * 2  # every offset, flipped and not


def test_cifar_augmentation_refuses_grey_images():
    with pytest.raises(TicketlabError, match="colour images"):
        AUGMENTATIONS.get("cifar")(torch.zeros(2, 1, 28, 28), torch.Generator())


def test_every_vision_preset_is_registered():
    assert set(VISION) <= set(PRESETS)
