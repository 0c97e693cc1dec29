"""Typed experiment configuration: dataclasses with help text, YAML files, `section.key=value` overrides,
validation at load, and a stable hash of the non-default settings that names the run directory."""

import copy
import dataclasses
import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import get_type_hints

from ticketlab.core.criteria import CRITERIA
from ticketlab.core.pruning import SCOPES
from ticketlab.engine import yaml_files
from ticketlab.engine.baselines import BASELINES
from ticketlab.engine.config_values import check_ranges, coerce, shown
from ticketlab.engine.durations import is_duration, parse_duration
from ticketlab.engine.rewind import REWINDS
from ticketlab.engine.yaml_files import parse_value
from ticketlab.errors import TicketlabError, unknown


def _help(text: str, default=dataclasses.MISSING, factory=dataclasses.MISSING):
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata={"help": text})
    return field(default=default, metadata={"help": text})


@dataclass
class ModelConfig:
    name: str = _help("registered model name (`ticketlab models`)", "lenet300")
    path: str | None = _help("directory of pretrained weights for models that load them (Hugging Face format)", None)
    digest: str | None = _help("a model of your own (ticketlab.find_tickets): digest of its initial weights", None)


@dataclass
class DataConfig:
    name: str = _help("registered dataset name (`ticketlab data list`)", "mnist-mini")
    root: str | None = _help("directory holding the dataset files (datasets read from disk)", None)
    batch_size: int = _help("training batch size", 60)
    val_size: int | None = _help("training samples held out for validation (default: the dataset's)", None)
    tokenizer: str | None = _help("text datasets: tokenizer directory (default: model.path)", None)
    augment: str = _help("training-batch augmentation: none | cifar (random crop, pad 4, and flip)", "none")
    digest: str | None = _help("data of your own (ticketlab.find_tickets): digest of its sizes and sampled items", None)


@dataclass
class TrainConfig:
    steps: str = _help("training length per level: '50000it' or '40ep'", "10ep")
    task: str | None = _help("your own loss, metric, training step or optimizer (ticketlab.find_tickets), by name",
                             None)
    optimizer: str = _help("sgd | adam | adamw", "adam")
    lr: float = _help("peak learning rate", 1.2e-3)
    momentum: float = _help("SGD momentum", 0.0)
    weight_decay: float = _help("weight decay (pruned weights stay zero regardless)", 0.0)
    schedule: str = _help("constant | step | linear (to zero) | cosine (to zero)", "constant")
    milestones: list[str] = _help("step schedule: when to multiply the lr by gamma ('20000it', '80ep')", factory=list)
    gamma: float = _help("step schedule factor", 0.1)
    warmup: str = _help("linear warmup length ('0it' = none)", "0it")
    eval_every: str = _help("evaluate on validation and test sets every ...", "1ep")
    checkpoint_every: str = _help("write a resumable checkpoint every ...", "1ep")
    device: str = _help("auto (cuda when present, else cpu) | cpu | cuda | cuda:N | mps", "auto")
    precision: str = _help("fp32 | bf16 | fp16 (autocast; fp16 with gradient scaling, CUDA only)", "fp32")
    channels_last: bool = _help("convnets: NHWC memory format (faster on GPUs with tensor cores)", False)
    compile: bool = _help("torch.compile the model (opt-in; first steps are slow)", False)
    batch_tickets: int = _help("train up to this many ready stages (seeds, baselines) of one architecture as one "
                               "batched model (layers keeping little train sparse); 1 = one at a time (fp32; models "
                               "without dropout)", 8)
    threads: int = _help("CPU threads for torch's intra-op work (torch.set_num_threads), set by the command that runs "
                         "the stages; 0 = torch's default (OMP_NUM_THREADS, else one per core). On a machine busy "
                         "with other work 1 is often several times faster. Not part of the run's identity", 0)


@dataclass
class PruneConfig:
    criterion: str = _help("what a pruning round scores: a criterion of ticketlab.core.criteria.CRITERIA", "magnitude")
    scope: str = _help("layer (each tensor loses `rate`) | global (one threshold)", "layer")
    rate: float = _help("fraction of the remaining weights removed per level, in [0, 1)", 0.2)
    rate_of: str = _help("remaining (IMP's usual rule) | original (remove `rate` of the original count per level, "
                         "as BERT tickets do)", "remaining")
    rates: dict[str, float] = _help("per-tensor rate overrides: {name or glob: rate}", factory=dict)
    exclude: list[str] = _help("tensors never pruned (names or globs)", factory=list)
    min_density: float = _help("keep at least this fraction of every pruned tensor (0 = no floor; a tensor left with "
                               "no weights stops the lottery unless lottery.allow_collapse)", 0.0)


@dataclass
class LotteryConfig:
    levels: int = _help("number of pruning levels after the dense level 0", 10)
    rewind: str = _help("where the survivors restart: a rewind mode of ticketlab.engine.rewind.REWINDS, or '<k>it'/"
                        "'<k>ep' (late rewinding to θk)", "init")
    target_density: float | None = _help("stop once the density is at most this (fraction kept)", None)
    max_drop: float | None = _help("stop when validation accuracy falls more than this (fraction) below level 0", None)
    baselines: list[str] = _help("baselines trained beside every level: names in ticketlab.engine.baselines.BASELINES",
                                 factory=lambda: ["random_pruning", "random_reinit"])
    allow_collapse: bool = _help("go on when pruning leaves a tensor with no weights (layer collapse); by default the "
                                 "lottery stops before such a level", False)


@dataclass
class SeedConfig:
    init: int = _help("seed of the initialisation", 0)
    data: int = _help("seed of the data order (and of the validation split)", 0)
    prune: int = _help("seed of random pruning", 0)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    lottery: LotteryConfig = field(default_factory=LotteryConfig)
    seeds: SeedConfig = field(default_factory=SeedConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    def non_default(self) -> dict:
        """The settings that differ from the defaults and change results, as {section: {key: value}}."""
        default, mine = Config().to_dict(), self.to_dict()
        out = {}
        for section, values in mine.items():
            diff = {k: v for k, v in values.items() if v != default[section][k] and (section, k) not in NOT_HASHED}
            if diff:
                out[section] = diff
        return out

    def hash(self) -> str:
        """Stable name of the settings: sha256 of the canonical JSON of the non-default settings."""
        text = json.dumps(self.non_default(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    def run_name(self) -> str:
        return f"{self.model.name}-{self.data.name}-{self.hash()}"


# The rule: a setting is hashed unless it cannot change a number the run writes. Two are left out: where the data
# files live (the data set's name is hashed; its files are not) and how often checkpoints are written (a resumed stage
# continues bit for bit). Everything else stays in, speed options included: device, precision, channels_last, compile
# and `batch_tickets` (a batched stage's sparse kernels round differently from an unbatched one's: Linear weights
# differ by up to ~7e-5 after 300 steps). Only non-default values are hashed, so adding a setting keeps old names. The
# model itself is not a setting: its fingerprint is recorded and checked beside the hash (ticketlab.engine.identity).
# `train.threads` is left out too, at every value: the thread count can change the low-order bits of reductions, but
# the default (torch's: one per core) already differs from machine to machine under one hash, so hashing an explicit
# count would split runs by machine, not by experiment; each stage's summary.json records the count it trained with.
NOT_HASHED = {("data", "root"), ("train", "checkpoint_every"), ("train", "threads")}
SECTIONS = {f.name: f.type for f in fields(Config)}
ALLOWED = {
    ("train", "optimizer"): ("sgd", "adam", "adamw"),
    ("train", "schedule"): ("constant", "step", "linear", "cosine"),
    ("train", "precision"): ("fp32", "bf16", "fp16"),
    ("prune", "criterion"): CRITERIA,  # registries: the names users registered count too
    ("prune", "scope"): SCOPES,
    ("prune", "rate_of"): ("remaining", "original"),
}
REGISTERED = {("prune", "criterion"): CRITERIA, ("lottery", "rewind"): REWINDS, ("lottery", "baselines"): BASELINES}


def from_dict(data: dict) -> Config:
    """A validated Config from nested {section: {key: value}}; unknown keys suggest the closest name."""
    cfg = Config()
    if not isinstance(data, dict):
        raise TicketlabError(f"a config must be a mapping of sections, got {type(data).__name__}")
    for section, values in data.items():
        if section not in SECTIONS:
            raise unknown("config section", section, SECTIONS)
        if values is None:  # `train:` with nothing under it
            continue
        if not isinstance(values, dict):
            raise TicketlabError(f"config section {section!r} must be a mapping of key: value, got {shown(values)}")
        target = getattr(cfg, section)
        hints = get_type_hints(type(target))
        for key, value in values.items():
            if key not in hints:
                raise unknown(f"config key in [{section}]", key, hints)
            setattr(target, key, coerce(value, hints[key], f"{section}.{key}"))
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Checks that need no data or model: choices, ranges, duration syntax."""
    from ticketlab.core.pruning import check_density, check_rate

    for (section, key), allowed in ALLOWED.items():
        value = getattr(getattr(cfg, section), key)
        if value not in allowed:
            raise unknown(f"{section}.{key}", value, allowed)
    from ticketlab.data.augment import AUGMENTATIONS

    AUGMENTATIONS.get(cfg.data.augment)
    for b in cfg.lottery.baselines:
        if b not in BASELINES:
            raise unknown("lottery.baselines entry", b, BASELINES)
    check_rate(cfg.prune.rate, "prune.rate")
    for pattern, r in cfg.prune.rates.items():
        check_rate(r, f"prune.rates[{pattern!r}]")
    if cfg.lottery.target_density is not None:
        check_density(cfg.lottery.target_density, "lottery.target_density")
    check_ranges(cfg)  # finite floats, integers in range (seeds below 2**31)
    for key in ("steps", "warmup", "eval_every", "checkpoint_every"):
        parse_duration(getattr(cfg.train, key), 1, f"train.{key}")
    for m in cfg.train.milestones:
        parse_duration(m, 1, "train.milestones entry")
    if cfg.lottery.rewind not in REWINDS and not is_duration(cfg.lottery.rewind):
        raise unknown("lottery.rewind", cfg.lottery.rewind, [*REWINDS, "<k>it", "<k>ep"])


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Merge `section.key=value` strings (values parsed as YAML: 0.1, [a, b], null) into nested `data`."""
    data = copy.deepcopy(data)  # keeps shared (aliased) values shared: no expansion
    for item in overrides:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) != 2 or not all(parts):
            raise TicketlabError(f"override {shown(item)} must look like section.key=value, e.g. train.lr=0.01")
        value = parse_value(raw)
        if data.get(parts[0]) is None:
            data[parts[0]] = {}
        if not isinstance(data[parts[0]], dict):
            raise TicketlabError(f"override {shown(item)}: {parts[0]!r} is not a section")
        data[parts[0]][parts[1]] = value
    return data


def load_yaml(path: str | Path, what: str = "config file"):
    """A YAML file's document, bounded (engine/yaml_files.py); an empty file is {}."""
    data = yaml_files.load_yaml(path, what)
    return {} if data is None else data


def load_config_file(path: str | Path) -> dict:
    """A YAML config file's {section: {key: value}} (an empty file is {}); anything else is one line."""
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise TicketlabError(f"config file {path} must be a mapping of sections (train: {{lr: 0.01}}), got "
                             f"{type(data).__name__}")
    return data


def merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for section, values in extra.items():
        if values is None:  # an empty section adds nothing
            continue
        if isinstance(values, dict) and isinstance(out.get(section), dict):
            out[section] = {**out[section], **values}
        else:
            out[section] = values
    return out


def help_text() -> dict[str, dict[str, str]]:
    """{section: {key: help}} for docs and `--help`; keys naming registry entries list the names registered now."""
    return {
        f.name: {g.name: g.metadata.get("help", "") + registered(f.name, g.name) for g in fields(f.default_factory())}
        for f in fields(Config)
    }


def registered(section: str, key: str) -> str:
    registry = REGISTERED.get((section, key))
    return f" (registered: {', '.join(registry)})" if registry is not None else ""

