"""The registries users extend: pruning criteria, baselines and rewind modes, registered here, outside the package,
and used by a real (tiny) IMP run; duplicates refused; unknown names refused with the registered ones listed."""

import json
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ticketlab import CRITERIA
from ticketlab.core import criteria
from ticketlab.core.masks import Masks
from ticketlab.core.pruning import PruneSpec, kept_after_rounds, prune, random_like
from ticketlab.engine.baselines import BASELINES, Start
from ticketlab.engine.config import from_dict, help_text
from ticketlab.engine.lottery import Lottery
from ticketlab.engine.presets import build_config
from ticketlab.engine.rewind import REWINDS, Rewind
from ticketlab.errors import TicketlabError
from ticketlab.models import MODELS

from .conftest import assert_user_error, main_in_process

FAST = ["train.steps=60it", "train.eval_every=20it", "train.checkpoint_every=20it", "lottery.levels=1"]
DOCS = Path(__file__).resolve().parents[1] / "docs"


def fast_config(*extra):
    return build_config("mlp-digits", overrides=[*FAST, *extra])


@contextmanager
def scratch(*registries):
    """Registrations made inside are gone afterwards; the built-ins are left as they were."""
    with pytest.MonkeyPatch.context() as mp:
        for registry in registries:
            mp.setattr(registry, "_entries", dict(registry._entries))
        yield


# ---- a user's extensions ---------------------------------------------------------------------------------------
def largest_first(weight, mask, generator):
    """A criterion: the largest weights go first, the inverse of magnitude pruning."""
    w = weight.detach().abs()
    return w.max() - w


def random_global(imp: Start, run) -> Start:
    """A baseline: IMP's start weights; as many kept weights as IMP keeps, spread uniformly over all tensors."""
    return replace(imp, masks=random_like(imp.masks, seed=run.cfg.seeds.prune + imp.level, per_tensor=False))


def halfway(total: int, steps_per_epoch: int) -> Rewind:
    """A rewind mode: the weights at mid-training, the schedule continuing from there."""
    return Rewind(step=total // 2)


@pytest.fixture(scope="module")
def user_run(tmp_path_factory):
    """IMP over one level with the user's criterion, and the user's baseline beside it."""
    with scratch(CRITERIA, BASELINES):
        CRITERIA.register("largest_first")(largest_first)
        BASELINES.register("random_global")(random_global)
        cfg = fast_config("prune.criterion=largest_first", "lottery.baselines=[random_global]")
        lottery = Lottery.open(cfg, tmp_path_factory.mktemp("runs"))
        lottery.run()
    return lottery


def test_user_criterion_prunes_by_its_scores(user_run):
    store = user_run.store
    final0 = user_run.final_weights(0)
    masks = Masks.load(store.level(1) / "masks.safetensors")
    magnitude = prune(final0, Masks.ones(final0, names=list(masks)), PruneSpec("magnitude", rates={"fc3.weight": 0.1}))
    params = dict(final0.named_parameters())
    for name, kept in masks.items():
        rate = 0.1 if name == "fc3.weight" else 0.2  # the preset's rates: the criterion changes which, not how many
        assert int(kept.sum()) == kept_after_rounds(kept.numel(), rate, 1), name
        w = params[name].detach().abs()
        assert w[kept].max() <= w[~kept].min(), name  # the smallest kept, the largest removed
        assert not (~kept & ~magnitude[name]).any(), name  # no weight removed by both: magnitude keeps the largest


def test_user_baseline_trains_beside_imp_with_its_masks(user_run):
    store, cfg = user_run.store, user_run.cfg
    ticket = Masks.load(store.level(1) / "masks.safetensors")
    stage = store.baseline(1, "random_global")
    masks = Masks.load(stage / "masks.safetensors")
    assert masks == random_like(ticket, seed=cfg.seeds.prune + 1, per_tensor=False)  # what the baseline returned
    assert sum(masks.kept().values()) == sum(ticket.kept().values()) and masks.kept() != ticket.kept()
    imp, baseline = user_run.summary(1), json.loads((stage / "summary.json").read_text())
    assert baseline["kind"] == "random_global" and baseline["level"] == 1
    assert baseline["steps"] == imp["steps"] and baseline["density"] == pytest.approx(ticket.density())
    assert not (store.level(1) / "baselines" / "random_pruning").exists()  # only the configured baselines train


def test_unregistered_names_are_refused_again_after_the_scratch_registry(user_run):
    with pytest.raises(TicketlabError, match="unknown prune.criterion 'largest_first'"):
        fast_config("prune.criterion=largest_first")


def test_user_rewind_mode_sets_the_rewind_point(tmp_path):
    with scratch(REWINDS):
        REWINDS.register("halfway")(halfway)
        lottery = Lottery.open(fast_config("lottery.rewind=halfway", "lottery.baselines=[]"), tmp_path)
        lottery.run()
        model, start, plan = lottery.start_point(1)
    theta_k = lottery.weights(lottery.store.rewind_path).state_dict()
    assert start == plan.start == 30 and torch.equal(model.state_dict()["fc1.weight"], theta_k["fc1.weight"])
    rows = (lottery.store.level(1) / "metrics.jsonl").read_text().splitlines()
    assert '"step": 30' in rows[0] and '"step": 60' in rows[-1]


def test_a_rewind_mode_beyond_the_training_is_refused(tmp_path):
    with scratch(REWINDS):
        REWINDS.register("late")(lambda total, steps_per_epoch: Rewind(step=total))
        with pytest.raises(TicketlabError, match="lottery.rewind 'late' is step 60, beyond the 60 training steps"):
            Lottery.open(fast_config("lottery.rewind=late"), tmp_path)
        assert not any(tmp_path.iterdir())  # refused before the run directory was made


# ---- one name, one entry -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("registry,name", [(CRITERIA, "magnitude"), (BASELINES, "oneshot"), (REWINDS, "init")])
def test_registering_a_builtin_name_again_is_refused(registry, name):
    before = registry.get(name)
    with pytest.raises(TicketlabError, match=f"{name!r} is already registered; pass replace=True"):
        registry.register(name)(lambda *args: None)
    assert registry.get(name) is before


def test_registering_a_model_name_again_is_refused():
    with pytest.raises(TicketlabError, match="model 'mlp' is already registered"):
        MODELS.register("mlp", input_shape=(4,), num_classes=2)(lambda num_classes: nn.Linear(4, num_classes))


def test_replace_true_replaces_on_purpose():
    with scratch(BASELINES, CRITERIA):
        BASELINES.register("oneshot", replace=True)(random_global)
        CRITERIA.register("magnitude", replace=True)(largest_first)
        assert BASELINES.get("oneshot") is random_global and CRITERIA.get("magnitude").score is largest_first
    assert BASELINES.get("oneshot") is not random_global and CRITERIA.get("magnitude").score is criteria.magnitude


# ---- unknown names: one line, the registered names listed ----------------------------------------------------------
@pytest.mark.parametrize("data,listed", [
    ({"prune": {"criterion": "magnitud"}}, "unknown prune.criterion 'magnitud' (did you mean 'magnitude'?); "
                                           "allowed: magnitude, neuron, random"),
    ({"lottery": {"baselines": ["one-shot"]}}, "unknown lottery.baselines entry 'one-shot' (did you mean 'oneshot'?); "
                                               "allowed: oneshot, random_pruning, random_reinit"),
    ({"lottery": {"rewind": "initial"}}, "unknown lottery.rewind 'initial' (did you mean 'init'?); "
                                         "allowed: <k>ep, <k>it, init, lr, none"),
])
def test_unknown_name_in_config_lists_the_registered_ones(data, listed):
    with pytest.raises(TicketlabError) as refused:
        from_dict(data)
    assert str(refused.value) == listed


def test_a_user_registration_is_allowed_and_listed_at_once():
    with scratch(CRITERIA):
        CRITERIA.register("largest_first")(largest_first)
        assert from_dict({"prune": {"criterion": "largest_first"}}).prune.criterion == "largest_first"
        assert "largest_first" in help_text()["prune"]["criterion"]
        with pytest.raises(TicketlabError, match="allowed: largest_first, magnitude, neuron, random"):
            from_dict({"prune": {"criterion": "smallest_first"}})


def test_cli_refuses_an_unknown_criterion_in_one_line(tmp_path, capsys):
    # through `run`'s main() in this process (its real command line's errors: test_lottery.py)
    assert_user_error(main_in_process(capsys, "run", "mlp-digits", "--set", "prune.criterion=magnitud", "--runs-dir",
                                      tmp_path), "did you mean 'magnitude'", "allowed: magnitude, neuron, random")
    assert not any(tmp_path.iterdir())  # refused before anything is written


def test_a_criterion_giving_the_wrong_number_of_scores_is_named():
    model = nn.Linear(4, 3)
    with scratch(CRITERIA):
        CRITERIA.register("rows", unit="weight")(lambda weight, mask, generator: weight.detach().abs().sum(dim=1))
        with pytest.raises(TicketlabError, match="criterion 'rows' gave 3 scores for a tensor of shape \\(3, 4\\)"):
            prune(model, Masks.ones(model), PruneSpec("rows"))
    with pytest.raises(TicketlabError, match="unknown criterion unit 'row'"):
        CRITERIA.register("rows", unit="row")


# ---- a user's criterion goes the same way as the built-ins ---------------------------------------------------------
shapes = st.lists(st.tuples(st.integers(1, 9), st.integers(1, 9)), min_size=1, max_size=3)


@settings(max_examples=40, deadline=None)
@given(shapes=shapes, rate=st.floats(0.0, 0.95), scope=st.sampled_from(["layer", "global"]), seed=st.integers(0, 99),
       ties=st.booleans())
def test_a_registered_copy_of_a_builtin_prunes_exactly_like_it(shapes, rate, scope, seed, ties):
    torch.manual_seed(seed)
    model = nn.ModuleDict({f"l{i}": nn.Linear(i_, o, bias=False) for i, (o, i_) in enumerate(shapes)})
    if ties:  # few distinct values: ties broken by position alike
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randint(-2, 3, p.shape).float())
    masks = prune(model, Masks.ones(model), PruneSpec("random", rate=0.3, seed=seed))  # some already pruned
    with scratch(CRITERIA):
        for name in ("magnitude", "neuron", "random"):
            builtin = CRITERIA.get(name)
            CRITERIA.register(f"my_{name}", unit=builtin.unit)(lambda w, m, g, f=builtin.score: f(w, m, g))
        for name in ("magnitude", "neuron", "random"):
            spec = PruneSpec(name, scope=scope, rate=rate, seed=seed)
            assert prune(model, masks, replace(spec, criterion=f"my_{name}")) == prune(model, masks, spec), name


# ---- one place: the docs describe every built-in -------------------------------------------------------------------
def test_docs_describe_every_registered_builtin():
    pruning, lottery = (DOCS / "pruning.md").read_text(), (DOCS / "lottery.md").read_text()
    assert all(f"| `{name}` |" in pruning for name in CRITERIA)
    assert all(f"`{name}`" in lottery for name in [*BASELINES, *REWINDS])


def test_docs_and_run_help_list_every_setting(capsys):
    lottery = (DOCS / "lottery.md").read_text()
    keys = [f"{section}.{key}" for section, keys in help_text().items() for key in keys]
    assert [key for key in keys if f"| `{key}` |" not in lottery] == []
    helped = main_in_process(capsys, "run", "--help")
    assert helped.returncode == 0 and "data.val_size (default: null)" in helped.stdout
    assert [key for key in keys if f"  {key} (default: " not in helped.stdout] == []
