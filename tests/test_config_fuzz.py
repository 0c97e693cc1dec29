"""Fuzzing the config parser: any YAML text, any `--set` strings and any values under real keys give a Config or a
TicketlabError with a one-line message, never another exception; alias bombs stay small in memory."""

import tracemalloc

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ticketlab.engine.config import Config, from_dict, help_text, merge
from ticketlab.engine.presets import build_config, preset_dict
from ticketlab.engine.yaml_files import parse
from ticketlab.errors import TicketlabError

KEYS = [(section, key) for section, keys in help_text().items() for key in keys]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)
yaml_text = st.one_of(st.text(max_size=200), st.lists(st.sampled_from(
    ["train:", " lr:", " .nan", "[", "]", "{", "}", "&a", "*a", "- ", ": ", "\n", "  ", "steps: 300", "!!binary",
     "2020-13-45", "? ", "|", "'", '"', "1e400", "seeds:", " init: -1", "0x1F", "!!python/object"]),
    max_size=30).map("".join))


def outcome(make):
    """make() -> a Config, or a one-line TicketlabError; anything else fails the test."""
    try:
        cfg = make()
    except TicketlabError as e:
        assert str(e).strip() and "\n" not in str(e).strip(), repr(str(e))
        return None
    assert isinstance(cfg, Config)
    cfg.hash()  # a config that validates can be hashed (JSON of finite values)
    return cfg


def from_yaml(text: str) -> Config:
    data = parse(text)
    if not isinstance(data, dict):
        raise TicketlabError("not a mapping")
    return from_dict(merge(preset_dict("mlp-digits"), data))


@FUZZ
@given(yaml_text)
def test_any_yaml_text_is_a_config_or_one_line(text):
    outcome(lambda: from_yaml(text))


@FUZZ
@given(st.lists(st.text(max_size=40), max_size=4))
def test_any_override_strings_are_a_config_or_one_line(overrides):
    outcome(lambda: build_config("mlp-digits", overrides=overrides))


@FUZZ
@given(st.sampled_from(KEYS), values)
def test_any_value_under_a_real_key_is_a_config_or_one_line(where, value):
    section, key = where
    cfg = outcome(lambda: from_dict({section: {key: value}}))
    if cfg is not None and isinstance(getattr(cfg.train, "lr", None), float):
        assert cfg.train.lr > 0 and cfg.train.lr == cfg.train.lr  # finite and positive whatever was given


def test_an_alias_bomb_is_refused_in_bounded_memory():
    bomb = "\n".join(['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]'] +
                     [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 12)])
    tracemalloc.start()
    try:
        outcome(lambda: from_yaml(bomb))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20


def test_small_aliases_are_fine():
    cfg = from_yaml("train: {warmup: &w 20it, eval_every: *w, milestones: [*w]}\n")
    assert cfg.train.eval_every == cfg.train.warmup == "20it" and cfg.train.milestones == ["20it"]
