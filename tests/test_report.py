import json
import statistics

import matplotlib.image
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from ticketlab.core.masks import Masks, describe_density
from ticketlab.errors import TicketlabError
from ticketlab.report import Stat, group_runs, load_runs, read_metrics, summary_table, write_report
from ticketlab.report.figures import neuron_norms_of

from .conftest import assert_user_error, main_in_process, run_cli
from .fake_runs import ACC, STOP, write_fake_run


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    """Two seeds of one config, 3 levels (0, 1, 2), all three baselines."""
    root = tmp_path_factory.mktemp("runs")
    for seed in (0, 1):
        write_fake_run(root, seed=seed)
    return root


@pytest.fixture(scope="module")
def report(two_seeds, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    md, page = write_report(load_runs([two_seeds]), out)
    return out, md.read_text(), page.read_text()


def expected(kind, level, table=ACC, step=0.01):
    values = [table[kind][level] + step * seed for seed in (0, 1)]
    return statistics.fmean(values), statistics.stdev(values)


# -- finding and grouping runs ------------------------------------------------------------------------------

def test_finds_runs_given_directly_or_one_and_two_levels_down(tmp_path):
    a = write_fake_run(tmp_path / "sweep", seed=0)
    write_fake_run(tmp_path / "sweep" / "more", seed=1)
    assert [r.path for r in load_runs(a)] == [a]
    assert sorted(r.seeds["init"] for r in load_runs([tmp_path / "sweep"])) == [0, 1]
    assert len(load_runs([a, tmp_path / "sweep"])) == 2  # a run named twice is read once


def test_a_path_that_is_not_a_run_names_it(tmp_path):
    with pytest.raises(TicketlabError, match="no such run directory: .*nowhere"):
        load_runs([tmp_path / "nowhere"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(TicketlabError, match="empty is not a run directory and holds none"):
        load_runs([tmp_path / "empty"])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text('{"hash": "x"}')
    with pytest.raises(TicketlabError, match="has no 'config' mapping"):
        load_runs([tmp_path / "bad"])


def test_runs_that_differ_only_in_seeds_form_one_group(tmp_path):
    for seed in (0, 1, 2):
        write_fake_run(tmp_path, seed=seed)
    write_fake_run(tmp_path, seed=0, levels=1, name="shorter")
    groups = group_runs(load_runs([tmp_path]))
    assert [len(g.runs) for g in groups] == [3, 1] or [len(g.runs) for g in groups] == [1, 3]
    big = next(g for g in groups if len(g.runs) == 3)
    assert [r.seeds["init"] for r in big.runs] == [0, 1, 2]
    assert "lottery.levels=1" in next(g for g in groups if len(g.runs) == 1).label


# -- aggregation ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,level", [("imp", 0), ("imp", 1), ("imp", 2), ("random_pruning", 1),
                                        ("random_reinit", 2), ("oneshot", 1)])
def test_mean_and_std_over_seeds(two_seeds, kind, level):
    (group,) = group_runs(load_runs([two_seeds]))
    row = group.row(kind, level)
    mean, std = expected(kind, level)
    assert (row.acc.mean, row.acc.std, row.acc.n) == (pytest.approx(mean), pytest.approx(std), 2)
    stop_mean, stop_std = expected(kind, level, STOP, 10)
    assert (row.stop.mean, row.stop.std) == (pytest.approx(stop_mean), pytest.approx(stop_std))
    assert row.status == "done"


def test_levels_kinds_and_densities(two_seeds):
    (group,) = group_runs(load_runs([two_seeds]))
    assert group.kinds() == ["imp", "random_pruning", "random_reinit", "oneshot"]
    assert group.levels("imp") == [0, 1, 2] and group.levels("oneshot") == [1, 2]
    densities = [group.row("imp", lv).density.mean for lv in (0, 1, 2)]
    assert densities[0] == 1.0 and densities[0] > densities[1] > densities[2]
    # random pruning keeps the same number of weights per tensor as IMP at its level
    assert group.row("random_pruning", 2).density.mean == pytest.approx(densities[2])
    assert group.best_ticket().level == 1  # 0.925 mean beats 0.915


@given(st.lists(st.floats(0, 1), min_size=1, max_size=8))
def test_stat_matches_statistics(values):
    stat = Stat.of(values)
    assert stat.n == len(values)
    assert min(values) - 1e-12 <= stat.mean <= max(values) + 1e-12
    assert stat.std == pytest.approx(statistics.stdev(values) if len(values) > 1 else 0.0, abs=1e-12)
    assert Stat.of([None]) is None


# -- the report files -----------------------------------------------------------------------------------------

FIGURES = ["accuracy", "early-stop", "training-curves", "layer-density", "neuron-norms"]


def test_report_files_and_figures_are_real_images(report):
    out, md, page = report
    for name in FIGURES:
        png = out / f"{name}.png"
        assert png.stat().st_size > 10_000, name
        image = matplotlib.image.imread(png)
        assert image.shape[0] > 300 and image.shape[1] > 500, (name, image.shape)
        assert f"]({name}.png)" in md and f'src="{name}.png"' in page
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page and "<table>" in page


def test_markdown_table_holds_the_measured_numbers(report):
    _, md, _ = report
    mean, std = expected("imp", 1)
    assert f"| {100 * mean:.2f} ± {100 * std:.2f} |" in md  # 92.50 ± 0.71
    mean, std = expected("random_reinit", 2)
    assert f"{100 * mean:.2f} ± {100 * std:.2f}" in md
    assert "| 0 | IMP | kept 100.0% (sparsity 0.0%) |" in md
    assert "| 65 ± 7 |" in md  # IMP level 1 early stop: steps 60 and 70
    for label in ("random pruning", "random reinit", "one-shot"):
        assert f"| 1 | {label} |" in md and f"| 2 | {label} |" in md
    assert "in progress" not in md


def test_summary_states_dense_best_ticket_and_random_pruning(report, two_seeds):
    _, md, _ = report
    (group,) = group_runs(load_runs([two_seeds]))
    kept = describe_density(group.row("imp", 1).density.mean)
    assert "Dense network (level 0): test accuracy at early stop 90.50 ± 0.71%" in md
    assert f"Best ticket (highest mean validation accuracy among levels ≥ 1): level 1, {kept}: 92.50 ± 0.71% " \
           "(+2.00 pp vs dense)" in md
    assert "Random pruning at the same level, kept" in md and "88.50 ± 0.71% (-2.00 pp vs dense)" in md


def test_summary_table_compares_dense_best_ticket_and_baselines(two_seeds):
    text = summary_table(load_runs([two_seeds]))
    lines = text.splitlines()
    assert "mlp-fake on fake" in lines[0] and "2 seeds" in lines[0]
    assert lines[2].startswith("dense (level 0)") and "90.50 ± 0.71" in lines[2] and "85 ± 7" in lines[2]
    assert lines[3].startswith("best IMP ticket (level 1)") and "92.50 ± 0.71" in lines[3]
    assert lines[4].startswith("random pruning (level 1)") and "88.50 ± 0.71" in lines[4]
    assert [line.split(" (level")[0] for line in lines[5:]] == [
        "random reinit", "one-shot", "sparsest IMP ticket", "random pruning", "random reinit", "one-shot"]
    assert lines[7].startswith("sparsest IMP ticket (level 2)")


def test_unfinished_stages_are_reported_as_in_progress(tmp_path):
    write_fake_run(tmp_path, seed=0)
    run1 = write_fake_run(tmp_path, seed=1)
    (run1 / "level_02" / "summary.json").unlink()  # seed 1 still training level 2
    for kind in ("random_pruning", "random_reinit", "oneshot"):
        (run1 / "level_02" / "baselines" / kind / "summary.json").unlink()
    runs = load_runs([tmp_path])
    assert [r.in_progress for r in runs] == [False, True]
    (group,) = group_runs(runs)
    row = group.row("imp", 2)
    assert row.status == "in progress (1/2 seeds done)" and row.acc.n == 1
    assert row.acc.mean == pytest.approx(ACC["imp"][2])
    md, _ = write_report(runs, tmp_path / "out")
    text = md.read_text()
    assert "still in progress" in text and "seed1` — seeds init=1, data=1, prune=1 — in progress" in text
    assert f"| 2 | IMP | {describe_density(row.density.mean)} |" in text and "| 1/2 | in progress" in text
    assert "(in progress)" in summary_table(runs).splitlines()[0]


def test_missing_levels_or_baselines_mean_in_progress(tmp_path):
    (run,) = load_runs([write_fake_run(tmp_path, seed=0, levels=1, name="a")])
    assert not run.in_progress
    run.config["lottery"]["levels"] = 3  # the config asks for more levels than exist yet
    assert run.in_progress
    run.config["lottery"]["target_density"] = 0.5  # ... unless a stopping rule may end it sooner
    assert not run.in_progress
    (run,) = load_runs([write_fake_run(tmp_path, seed=0, levels=1, baselines=("oneshot",), name="b")])
    run.config["lottery"]["baselines"] = ["oneshot", "random_reinit"]
    assert run.in_progress


def test_metrics_reader_skips_only_an_unterminated_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 0, "test_acc": 0.1}\n{"step": 10, "test_a')
    assert read_metrics(path) == [{"step": 0, "test_acc": 0.1}]
    path.write_text('{"step": 0}\nnot json\n{"step": 10}\n')
    with pytest.raises(TicketlabError, match="corrupt metrics file .*line 2"):
        read_metrics(path)


# -- the command ----------------------------------------------------------------------------------------------

def test_cli_writes_report_and_prints_summary(two_seeds, tmp_path):
    result = run_cli("report", two_seeds, "--out", tmp_path / "rep")
    assert result.returncode == 0, result.stderr
    assert "best IMP ticket (level 1)" in result.stdout and "92.50 ± 0.71" in result.stdout
    assert f"wrote {tmp_path / 'rep' / 'report.html'}" in result.stdout
    assert (tmp_path / "rep" / "accuracy.png").is_file()


def test_cli_default_out_is_inside_the_first_path(tmp_path):
    run = write_fake_run(tmp_path, seed=0, levels=1)
    (run / "report").mkdir()
    (run / "report" / "group2-accuracy.png").write_bytes(b"stale")  # from an earlier two-group report
    (run / "report" / "notes.png").write_bytes(b"mine")
    result = run_cli("report", run)
    assert result.returncode == 0, result.stderr
    assert (run / "report" / "report.md").is_file() and (run / "report" / "accuracy.png").is_file()
    assert not (run / "report" / "group2-accuracy.png").exists() and (run / "report" / "notes.png").exists()
    assert load_runs([run])[0].path == run  # the report folder is not mistaken for a run


def test_cli_bad_path_exits_2_with_one_line(tmp_path, capsys):
    assert_user_error(run_cli("report", tmp_path / "no-such-run"), "no such run directory", "no-such-run")
    # the command's other message through its main() in this process (its real command line: above)
    assert_user_error(main_in_process(capsys, "report", tmp_path), "is not a run directory")


def test_a_level_still_training_in_every_seed_shows_its_mask_density(tmp_path):
    for seed in (0, 1):
        run = write_fake_run(tmp_path, seed=seed)
        for stage in [run / "level_02", *(run / "level_02" / "baselines").iterdir()]:
            (stage / "summary.json").unlink()
            (stage / "final.safetensors").unlink()
    runs = load_runs([tmp_path])
    (group,) = group_runs(runs)
    row = group.row("imp", 2)
    masks_density = group.stages("imp", 2)[0].masks().density()
    assert row.acc is None and row.done == 0 and row.density.mean == pytest.approx(masks_density)
    md, _ = write_report(runs, tmp_path / "out")
    assert f"| 2 | IMP | {describe_density(masks_density)} | — | — | — | — | 0/2 | in progress (0/2 seeds done) |" \
        in md.read_text()
    assert (tmp_path / "out" / "neuron-norms.png").is_file()  # drawn from level 1, the sparsest finished level


def test_neuron_norms_are_per_output_unit_after_the_mask():
    gen = torch.Generator().manual_seed(0)
    conv, fc, out = (torch.randn(*shape, generator=gen) for shape in [(4, 3, 3, 3), (5, 36), (2, 5)])
    masks = Masks({"conv.weight": torch.rand(4, 3, 3, 3, generator=gen) > 0.5,
                   "fc.weight": torch.ones(5, 36, dtype=torch.bool), "out.weight": torch.ones(2, 5, dtype=torch.bool)})
    norms = neuron_norms_of({"conv.weight": conv, "fc.weight": fc, "out.weight": out}, masks)
    assert list(norms) == ["conv.weight", "fc.weight"]  # the output layer's units are logits, not neurons
    expected_conv = torch.stack([(conv[i] * masks["conv.weight"][i]).pow(2).sum().sqrt() for i in range(4)])
    torch.testing.assert_close(norms["conv.weight"], expected_conv)
    torch.testing.assert_close(norms["fc.weight"], fc.norm(dim=1))


def test_a_diverged_seed_counts_in_the_mean_and_is_flagged(tmp_path):
    write_fake_run(tmp_path, seed=0)
    run1 = write_fake_run(tmp_path, seed=1)
    path = run1 / "level_02" / "summary.json"
    summary = json.loads(path.read_text())
    path.write_text(json.dumps({**summary, "status": "diverged", "early_stop_test_acc": 0.1}))
    (group,) = group_runs(load_runs([tmp_path]))
    row = group.row("imp", 2)
    assert row.status == "1 diverged" and row.acc.mean == pytest.approx((ACC["imp"][2] + 0.1) / 2)


def test_paired_difference_has_the_t_interval_of_known_answers():
    from ticketlab.report.paired import Paired, t975

    assert t975(2) == 4.303 and t975(11) == 2.228 and t975(100) == 1.96
    p = Paired.of([0.01, 0.02, 0.03])  # mean 0.02, sd 0.01, se 0.01/sqrt(3), t(2) = 4.303
    half = 4.303 * 0.01 / 3**0.5
    assert p.n == 3 and abs(p.mean - 0.02) < 1e-12
    assert abs(p.low - (0.02 - half)) < 1e-12 and abs(p.high - (0.02 + half)) < 1e-12
    assert p.verdict == "no difference resolved"  # +2 pp, but three seeds this spread do not resolve it
    assert Paired.of([0.02, 0.021, 0.019]).verdict == "higher"
    assert Paired.of([-0.03, -0.02, -0.025]).verdict == "lower"
    assert Paired.of([0.5]) is None  # one pair has no interval
    assert p.format() == "+2.00 pp (95% CI -0.48 to +4.48, 3 seeds)"


def test_paired_difference_pairs_stages_of_the_same_seed(tmp_path):
    from ticketlab.report.paired import paired_difference
    from ticketlab.report.runs import Run, Stage

    def run(dense, ticket):
        stage = lambda level, acc: Stage(tmp_path, "imp", level, {"early_stop_test_acc": acc}, [])  # noqa: E731
        return Run.__new__(Run), [stage(0, dense), stage(3, ticket)]

    runs = []
    for dense, ticket in [(0.90, 0.92), (0.80, 0.82), (0.85, 0.871)]:  # seeds differ by 5 pp, gains by 0.1 pp
        r, stages = run(dense, ticket)
        r.stages = stages
        runs.append(r)
    p = paired_difference(runs, ("imp", 3), ("imp", 0))
    assert p.n == 3 and abs(p.mean - 0.0203333) < 1e-6 and p.verdict == "higher"
