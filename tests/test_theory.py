"""The theory lab: analytic gradient and Hessian vs autograd, exact recovery of the teacher, generator statistics,
support recovery by magnitude pruning, fits, non-finite handling, every experiment's --quick run and bad input."""

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ticketlab.errors import TicketlabError
from ticketlab.paper.theory import EXPERIMENTS, run_experiment
from ticketlab.paper.theory.features import FeatureTask, balanced_labels, make_patterns, sample_graph, sample_patches
from ticketlab.paper.theory.fitting import crossing, finite_stats, fit_line, fit_loglog
from ticketlab.paper.theory.imp import prune_per_neuron, support_recovery
from ticketlab.paper.theory.init import moment_init, near_teacher
from ticketlab.paper.theory.neuron_pruning import keep_top_per_sign
from ticketlab.paper.theory.patchnet import goodness, hinge_and_grad, output_signs
from ticketlab.paper.theory.student import hessian_at, loss, loss_and_grad, relative_error, smoothed_hessian
from ticketlab.paper.theory.table import BEGIN, END, ORDER
from ticketlab.paper.theory.teacher import make_teacher, oracle_mask, sample
from ticketlab.paper.theory.trainer import TrainSettings, train
from ticketlab.paper.theory.verdict import WORDS

from .conftest import assert_user_error, main_in_process, run_cli


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: bit-reproducible trials


# -- teacher-student: gradient, Hessian, exact recovery -------------------------------------------------------

def test_analytic_gradient_matches_autograd():
    teacher = make_teacher(3, 12, 4, 3, gen(), dtype=torch.float64)
    mask = oracle_mask(teacher, 6, gen(1))
    X, y = sample(teacher, 50, 0.1, gen(2))
    W = near_teacher(teacher.weights, mask, 0.5, gen(3)).requires_grad_(True)
    loss(W, X, y).sum().backward()
    value, grad = loss_and_grad(W.detach(), X, y, mask)
    assert torch.allclose(value, loss(W.detach(), X, y))
    assert torch.allclose(grad, W.grad * mask, atol=1e-12, rtol=1e-9)
    assert bool((grad[~mask] == 0).all())


def test_hessian_at_teacher_matches_autograd():
    teacher = make_teacher(1, 8, 2, 2, gen(), dtype=torch.float64)
    mask = oracle_mask(teacher, 4, gen(1))
    X, y = sample(teacher, 40, 0.0, gen(2))
    kept = mask[0].nonzero(as_tuple=True)

    def f(v):
        W = torch.zeros(1, 2, 8, dtype=torch.float64).index_put((torch.zeros_like(kept[0]), *kept), v)
        return loss(W, X, y).sum()

    expected = torch.autograd.functional.hessian(f, teacher.weights[0][kept])
    assert torch.allclose(hessian_at(teacher.weights, X, mask)[0], expected, atol=1e-12)


def test_smoothed_hessian_is_gauss_newton_at_teacher_and_matches_finite_differences_away():
    teacher = make_teacher(2, 10, 3, 3, gen(), dtype=torch.float64)
    mask = oracle_mask(teacher, 5, gen(1))
    X, y = sample(teacher, 200_000, 0.0, gen(2))
    assert torch.allclose(smoothed_hessian(teacher.weights, X, y, mask, 0.05), hessian_at(teacher.weights, X, mask))
    # Away from W*, the residual times the kinks' mass bends the loss: the curvature along a direction v, a central
    # difference of the analytic gradient, must match v^T H v, which Gauss-Newton alone misses.
    U, V = (torch.randn(teacher.weights.shape, generator=gen(s), dtype=torch.float64) * mask for s in (3, 4))
    unit = lambda t: t / t.flatten(1).norm(dim=1).view(-1, 1, 1)  # noqa: E731
    W = teacher.weights + 0.3 * unit(U) * teacher.weights.flatten(1).norm(dim=1).view(-1, 1, 1)
    V, h = unit(V), 1e-2
    along = ((loss_and_grad(W + h * V, X, y, mask)[1] - loss_and_grad(W - h * V, X, y, mask)[1]) * V).flatten(1)
    v = torch.stack([V[t][mask[t]] for t in range(2)])  # kept weights, neuron-major like the Hessian
    quadratic = lambda H: torch.einsum("ti,tij,tj->t", v, H, v)  # noqa: E731
    smoothed, gauss_newton = quadratic(smoothed_hessian(W, X, y, mask, 0.01)), quadratic(hessian_at(W, X, mask))
    fd = along.sum(1) / (2 * h)
    assert torch.allclose(smoothed, fd, rtol=0.05)
    assert (gauss_newton - fd).abs().max() > 5 * (smoothed - fd).abs().max()


def test_noiseless_oracle_training_recovers_teacher_to_1e_6():
    teacher = make_teacher(4, 20, 3, 4, gen(), dtype=torch.float64)
    mask = oracle_mask(teacher, 8, gen(1))
    X, y = sample(teacher, 400, 0.0, gen(2))
    W0 = near_teacher(teacher.weights, mask, 0.2, gen(3))
    assert torch.allclose(relative_error(W0, teacher.weights), torch.full((4,), 0.2, dtype=torch.float64))
    res = train(W0, mask, X, y, TrainSettings(lr=0.5 * 9, momentum=0.9, max_iters=3000, eps=1e-7),
                teacher.weights)
    assert bool(res.finite.all())
    assert float(res.final_error.max()) < 1e-6
    assert bool((res.weights[~mask] == 0).all())  # pruned weights never come back


def test_moment_init_points_each_pruned_neuron_towards_its_teacher():
    teacher = make_teacher(3, 60, 3, 5, gen())
    mask = oracle_mask(teacher, 5, gen(1))  # r = r*: masks are the supports, disjoint enough
    X, y = sample(teacher, 20000, 0.0, gen(2))
    cos = (moment_init(X, y, mask) * teacher.weights).sum(-1)
    assert float(cos.median()) > 0.9


# -- generators ------------------------------------------------------------------------------------------------

@settings(max_examples=15, deadline=None)
@given(d=st.integers(2, 30), K=st.integers(1, 5), data=st.data())
def test_teacher_and_mask_support(d, K, data):
    r_star = data.draw(st.integers(1, d))
    r = data.draw(st.integers(r_star, d))
    teacher = make_teacher(3, d, K, r_star, gen())
    assert bool((teacher.support.sum(-1) == r_star).all())
    assert bool(((teacher.weights != 0) <= teacher.support).all())
    assert torch.allclose(teacher.weights.norm(dim=-1), torch.ones(3, K))
    mask = oracle_mask(teacher, r, gen(1))
    assert bool((mask.sum(-1) == r).all())
    assert bool((teacher.support <= mask).all())


def test_feature_generator_statistics():
    task = FeatureTask(d=20, M=6, P=5, relevant=2, sigma=0.0)
    patterns = make_patterns(4, task, gen())
    gram = patterns @ patterns.transpose(1, 2)
    assert torch.allclose(gram, torch.eye(8).expand(4, 8, 8), atol=1e-5)
    X, y, relevant = sample_patches(patterns, 101, task, gen(1))
    assert bool(((y == 1).sum(1) == 51).all()) and bool(((y == -1).sum(1) == 50).all())
    assert bool((relevant.sum(-1) == 2).all())
    own = patterns[torch.arange(4).view(4, 1), torch.where(y > 0, 0, 1)]  # (T, N, d): p_y
    dots = torch.einsum("tnpd,tnd->tnp", X, own)
    assert torch.allclose(dots, relevant.float(), atol=1e-5)  # p_y exactly where marked, orthogonal elsewhere
    other = patterns[torch.arange(4).view(4, 1), torch.where(y > 0, 1, 0)]
    assert torch.allclose(torch.einsum("tnpd,tnd->tnp", X, other), torch.zeros(4, 101, 5), atol=1e-5)


def test_graph_neighbourhoods_follow_homophily():
    task = FeatureTask(d=20, M=6, P=5, relevant=3, sigma=0.0, homophily=1.0)
    patterns = make_patterns(2, task, gen())
    X, y, index = sample_graph(patterns, 60, task, gen(1))
    labels = torch.cat([y, torch.zeros_like(y)], dim=1)  # background nodes have no class
    relevant_labels = torch.gather(labels, 1, index[..., :3].reshape(2, -1)).reshape(2, 60, 3)
    assert bool((relevant_labels == y.unsqueeze(-1)).all())
    assert bool((index[..., 3:] >= 60).all())  # the rest are background nodes
    half = FeatureTask(d=20, M=6, P=5, relevant=3, sigma=0.0, homophily=0.5)
    _, y2, index2 = sample_graph(patterns, 2000, half, gen(2))
    labels2 = torch.cat([y2, torch.zeros_like(y2)], dim=1)
    same = torch.gather(labels2, 1, index2[..., :3].reshape(2, -1)).reshape(2, 2000, 3) == y2.unsqueeze(-1)
    assert abs(float(same.float().mean()) - 0.5) < 0.03


def test_balanced_labels_odd_count():
    y = balanced_labels(5, 7, gen())
    assert bool(((y == 1).sum(1) == 4).all())


# -- pruning and support recovery --------------------------------------------------------------------------------

def test_magnitude_pruning_of_trained_dense_learner_recovers_teacher_support():
    teacher = make_teacher(4, 30, 3, 5, gen())
    X, y = sample(teacher, 3000, 0.01, gen(1))
    dense = torch.ones_like(teacher.support)
    W0 = near_teacher(teacher.weights, dense, 0.3, gen(2))
    res = train(W0, dense, X, y, TrainSettings(lr=0.5 * 9, momentum=0.9, max_iters=2000, stall_tol=1e-8),
                teacher.weights)
    mask = prune_per_neuron(res.weights, dense, 1 - 5 / 30)
    assert torch.equal(mask, teacher.support)
    precision, recall = support_recovery(mask, teacher.support)
    assert bool((precision == 1).all()) and bool((recall == 1).all())


def test_prune_per_neuron_counts_and_never_revives():
    W = torch.randn(2, 3, 10, generator=gen())
    mask = torch.rand(2, 3, 10, generator=gen(1)).argsort(-1) < 6  # 6 kept per row
    new = prune_per_neuron(W, mask, 0.5)
    assert bool((new.sum(-1) == 3).all()) and bool((new <= mask).all())
    kept_min = torch.where(new, W.abs(), torch.inf).amin(-1)
    dropped_max = torch.where(mask & ~new, W.abs(), -torch.inf).amax(-1)
    assert bool((kept_min >= dropped_max).all())


def test_neuron_goodness_and_per_sign_pruning():
    patterns = torch.eye(4).unsqueeze(0)  # p+ = e0, p- = e1
    W = torch.tensor([[[1.0, 0, 0, 0], [-1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, -1.0, 0.5, 0]]])
    angle, good = goodness(W, patterns)
    assert good.tolist() == [[True, False, True, False]]
    assert torch.allclose(angle[0, :3], torch.tensor([0.0, 180.0, 0.0]), atol=1e-3)
    assert output_signs(4).tolist() == [1, 1, -1, -1]
    keep = keep_top_per_sign(torch.tensor([[5.0, 4.0, 1.0, 2.0]]), 0.5)
    assert keep.tolist() == [[1, 0, 0, 1]]  # each sign keeps its larger neuron, not the two largest overall


def test_hinge_gradient_matches_autograd():
    task = FeatureTask(d=10, M=3, P=4, relevant=1, sigma=0.1)
    patterns = make_patterns(2, task, gen())
    X, y, _ = sample_patches(patterns, 30, task, gen(1))
    X, y = X.double(), y.double()
    W = (0.3 * torch.randn(2, 6, 10, generator=gen(2))).double().requires_grad_(True)
    alive = torch.tensor([[1.0, 1, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1]], dtype=torch.float64)
    from ticketlab.paper.theory.patchnet import forward
    f, _ = forward(W, X, alive)
    torch.relu(1 - y * f).mean(-1).sum().backward()
    _, grad = hinge_and_grad(W.detach(), X, y, alive)
    assert torch.allclose(grad, W.grad, atol=1e-12)


# -- fitting and non-finite handling ---------------------------------------------------------------------------

def test_fits_recover_slopes_and_intervals():
    x = torch.arange(1.0, 21.0)
    exact = fit_line(x, 3 * x - 2)
    assert exact.slope == pytest.approx(3) and exact.intercept == pytest.approx(-2)
    noisy = fit_loglog(x.repeat(10), (x.repeat(10) ** 0.5) * torch.exp(0.05 * torch.randn(200, generator=gen())))
    lo, hi = noisy.slope_ci
    assert lo < 0.5 < hi and hi - lo < 0.1
    with_nan = fit_line(torch.tensor([1.0, 2, 3, 4, float("nan")]), torch.tensor([1.0, 2, 3, 4, 5]))
    assert with_nan.dropped == 1 and with_nan.n == 4
    assert fit_line([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) is None
    assert crossing([10, 20, 30], [0.0, 0.25, 1.0]) == pytest.approx(20 + 0.25 / 0.75 * 10)
    assert math.isnan(crossing([10, 20], [0.0, 0.2]))


def test_nonfinite_trials_are_reported_and_excluded():
    teacher = make_teacher(4, 10, 2, 3, gen())
    mask = oracle_mask(teacher, 5, gen(1))
    X, y = sample(teacher, 50, 0.0, gen(2))
    X[1] *= 1e6  # trial 1 explodes
    W0 = near_teacher(teacher.weights, mask, 0.3, gen(3))
    res = train(W0, mask, X, y, TrainSettings(lr=2.0, max_iters=200, eps=1e-3), teacher.weights)
    assert res.finite.tolist() == [True, False, True, True]
    assert int(res.nonfinite_at[1]) > 0 and bool((res.nonfinite_at[[0, 2, 3]] == -1).all())
    assert bool(torch.isfinite(res.weights).all())
    stats = finite_stats(res.final_error, res.finite)
    assert stats["excluded"] == 1 and stats["n"] == 3 and math.isfinite(stats["mean"])


# -- experiments through the CLI ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", EXPERIMENTS.names())
def test_quick_run_writes_its_files_and_verdicts(name, tmp_path):
    out = tmp_path / name
    results = run_experiment(name, out, quick=True, progress=lambda *_: None)
    assert json.loads((out / "results.json").read_text())["verdicts"] == results["verdicts"]
    assert results["experiment"] == name and results["size"] == "quick"
    for file in results["files"]:
        assert (out / file).stat().st_size > 0, file
    assert any(f.endswith(".png") for f in results["files"]) and any(f.endswith(".csv") for f in results["files"])
    for v in results["verdicts"]:
        assert v["verdict"] in WORDS and v["claim"] and v["evidence"]
        assert v["figure"] is None or v["figure"] in results["files"]


def test_cli_run_prints_verdicts_and_report_writes_the_doc_table(tmp_path):
    result = run_cli("theory", "run", "neuron-samples", "--quick", "--out", tmp_path / "runs" / "ns", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "non-finite trials excluded" in result.stdout and "VERDICT" in result.stdout
    doc = tmp_path / "doc.md"
    doc.write_text(f"intro\n{BEGIN}\nold\n{END}\noutro\n")
    report = run_cli("theory", "report", tmp_path / "runs", "--write-doc", doc)
    assert report.returncode == 0, report.stderr
    text = doc.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old" not in text
    assert "| claim | experiment | figure | verdict |" in text and "`neuron-samples` (global magnitude)" in text
    assert "](runs/ns/neuron_samples.png)" in text  # figure links relative to the document
    assert set(ORDER) == set(EXPERIMENTS.names())  # every experiment has a place in the doc's table
    bare = tmp_path / "bare.md"
    bare.write_text("no markers\n")
    assert_user_error(run_cli("theory", "report", tmp_path / "runs", "--write-doc", bare), "has no table markers")


def test_run_is_seeded(tmp_path):
    a = run_experiment("concentration", tmp_path / "a", quick=True, seed=3, progress=lambda *_: None)
    b = run_experiment("concentration", tmp_path / "b", quick=True, seed=3, progress=lambda *_: None)
    assert (tmp_path / "a" / "trials.csv").read_text() == (tmp_path / "b" / "trials.csv").read_text()
    assert a["fits"] == b["fits"]


def test_list_and_report(tmp_path):
    listed = run_cli("theory", "list")
    assert listed.returncode == 0 and all(name in listed.stdout for name in EXPERIMENTS.names())
    run_experiment("neuron-samples", tmp_path / "ns", quick=True, progress=lambda *_: None)
    report = run_cli("theory", "report", tmp_path)
    assert report.returncode == 0 and "neuron-samples (quick size" in report.stdout and "VERDICT" in report.stdout


def test_diverging_settings_report_nonfinite_trials(tmp_path):
    results = run_experiment("phase", tmp_path, quick=True, overrides=["lr=1e4", "rs=40", "Ns=320",
                                                                       "variants=oracle"], progress=lambda *_: None)
    assert results["nonfinite_trials"] == 4  # every trial of the cell, none counted as a success
    rows = (tmp_path / "trials.csv").read_text().splitlines()[1:]
    assert len(rows) == 4 and all(",False,False," in row for row in rows)  # finite=False, success=False


@pytest.mark.parametrize("args, needles", [
    (["run", "phse"], ["unknown theory experiment 'phse'", "did you mean 'phase'"]),
    (["run", "phase", "--set", "rs=5,60", "--quick"], ["r=60 exceeds d=40"]),
    (["run", "phase", "--set", "r_star=12", "--quick"], ["r=5 is below r_star=12"]),
    (["run", "error", "--set", "K=0"], ["K (hidden neurons) must be a positive integer, got 0"]),
    (["run", "imp", "--set", "N=0"], ["N (training samples) must be a positive integer, got 0"]),
    (["run", "error", "--set", "sigmas=-0.1"], ["sigma (label noise) must be a finite number >= 0, got -0.1"]),
    (["run", "phase", "--set", "Ns=100000000"], ["needs about", "GiB (limit 2.00 GiB)"]),
    (["run", "phase", "--set", "colour=3"], ["unknown setting of PhaseSettings 'colour'"]),
    (["run", "phase", "--set", "variants=lucky"], ["unknown Part-1 variant 'lucky'"]),
    (["run", "imp", "--set", "starts=far"], ["unknown IMP start 'far'"]),
    (["run", "norms", "--set", "M=40"], ["orthonormal patterns do not fit in d = 30"]),
    (["report", "."], ["no theory run directory"]),
])
def test_bad_input_is_one_line_exit_2(args, needles, tmp_path, capsys, monkeypatch):
    if args == ["run", "phse"]:  # `theory run` through the real command line (`theory report`'s: above)
        result = run_cli("theory", *args, cwd=tmp_path)
    else:  # the other messages through the command's main() in this process
        monkeypatch.chdir(tmp_path)
        result = main_in_process(capsys, "theory", *args)
    assert_user_error(result, *needles)
    assert not any(tmp_path.glob("theory-runs/*/results.json"))


def test_impossible_shapes_raise_before_any_work():
    with pytest.raises(TicketlabError, match="r_star=5 exceeds d=4"):
        make_teacher(1, 4, 2, 5, gen())
    with pytest.raises(TicketlabError, match="sigma"):
        sample(make_teacher(1, 4, 2, 2, gen()), 10, -1.0, gen())
