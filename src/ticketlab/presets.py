"""Named experiment presets: published setups (frankle2019_setups.md in the project's references) and fast CPU
setups on the bundled data. A preset is a partial config; `--set` overrides go on top."""

from .config import Config, from_dict, merge
from .errors import unknown

FC_OUTPUT_HALF = {"fc3.weight": 0.1}  # Frankle & Carbin prune the output layer at half the rate

PRESETS: dict[str, dict] = {
    # Frankle & Carbin, ICLR 2019: LeNet-300-100, Adam 1.2e-3, batch 60, 50K iterations, fc 20% / output 10%.
    "lenet300-mnist": {
        "model": {"name": "lenet300"}, "data": {"name": "mnist", "batch_size": 60},
        "train": {"steps": "50000it", "optimizer": "adam", "lr": 1.2e-3, "eval_every": "100it",
                  "checkpoint_every": "1000it"},
        "prune": {"scope": "layer", "rate": 0.2, "rates": FC_OUTPUT_HALF},
        "lottery": {"levels": 18, "rewind": "init"},
    },
    # OpenLTH defaults: SGD 0.1, batch 128, 40 epochs, global 20%, output layer never pruned.
    "openlth-lenet300": {
        "model": {"name": "lenet300"}, "data": {"name": "mnist", "batch_size": 128},
        "train": {"steps": "40ep", "optimizer": "sgd", "lr": 0.1},
        "prune": {"scope": "global", "rate": 0.2, "exclude": ["fc3.weight"]},
        "lottery": {"levels": 18, "rewind": "init"},
    },
    "conv2-cifar10": {
        "model": {"name": "conv2"}, "data": {"name": "cifar10", "batch_size": 60},
        "train": {"steps": "20000it", "optimizer": "adam", "lr": 2e-4, "eval_every": "500it",
                  "checkpoint_every": "1000it"},
        "prune": {"rate": 0.2, "rates": {"conv*": 0.1, **FC_OUTPUT_HALF}},
        "lottery": {"levels": 20},
    },
    "conv4-cifar10": {
        "model": {"name": "conv4"}, "data": {"name": "cifar10", "batch_size": 60},
        "train": {"steps": "25000it", "optimizer": "adam", "lr": 3e-4, "eval_every": "500it",
                  "checkpoint_every": "1000it"},
        "prune": {"rate": 0.2, "rates": {"conv*": 0.1, **FC_OUTPUT_HALF}},
        "lottery": {"levels": 20},
    },
    "conv6-cifar10": {
        "model": {"name": "conv6"}, "data": {"name": "cifar10", "batch_size": 60},
        "train": {"steps": "30000it", "optimizer": "adam", "lr": 3e-4, "eval_every": "500it",
                  "checkpoint_every": "1000it"},
        "prune": {"rate": 0.2, "rates": {"conv*": 0.15, **FC_OUTPUT_HALF}},
        "lottery": {"levels": 20},
    },
    # Frankle et al. 2020 (rewinding): 63K iterations, batch 128, SGD 0.9, 0.1 x0.1 at 32K/48K, wd 1e-4, global 20%.
    "resnet20-cifar10": {
        "model": {"name": "resnet20"}, "data": {"name": "cifar10", "batch_size": 128},
        "train": {"steps": "63000it", "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4,
                  "schedule": "step", "milestones": ["32000it", "48000it"], "eval_every": "1000it",
                  "checkpoint_every": "1000it"},
        "prune": {"scope": "global", "rate": 0.2},
        "lottery": {"levels": 20, "rewind": "500it"},
    },
    "vgg16-cifar10": {
        "model": {"name": "vgg16-cifar"}, "data": {"name": "cifar10", "batch_size": 128},
        "train": {"steps": "63000it", "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4,
                  "schedule": "step", "milestones": ["32000it", "48000it"], "eval_every": "1000it",
                  "checkpoint_every": "1000it"},
        "prune": {"scope": "global", "rate": 0.2, "exclude": ["fc.weight"]},
        "lottery": {"levels": 20, "rewind": "1000it"},
    },
    # Fast CPU presets on bundled data (seconds to minutes on 2 cores).
    "lenet300-mnist-mini": {
        "model": {"name": "lenet300"}, "data": {"name": "mnist-mini", "batch_size": 60},
        "train": {"steps": "600it", "optimizer": "adam", "lr": 1.2e-3, "eval_every": "50it",
                  "checkpoint_every": "200it"},
        "prune": {"scope": "layer", "rate": 0.2, "rates": FC_OUTPUT_HALF},
        "lottery": {"levels": 10, "rewind": "init", "baselines": ["random_pruning", "random_reinit"]},
    },
    "mlp-mnist1d": {
        "model": {"name": "mlp"}, "data": {"name": "mnist1d", "batch_size": 100},
        "train": {"steps": "3000it", "optimizer": "adam", "lr": 1e-3, "eval_every": "100it",
                  "checkpoint_every": "500it"},
        "prune": {"scope": "layer", "rate": 0.2, "rates": {"fc3.weight": 0.1}},
        "lottery": {"levels": 8, "baselines": ["random_pruning", "random_reinit", "oneshot"]},
    },
    "mlp-digits": {
        "model": {"name": "mlp"}, "data": {"name": "digits", "batch_size": 32},
        "train": {"steps": "300it", "optimizer": "adam", "lr": 1e-3, "eval_every": "25it",
                  "checkpoint_every": "100it"},
        "prune": {"scope": "layer", "rate": 0.2, "rates": FC_OUTPUT_HALF},
        "lottery": {"levels": 5},
    },
}

DESCRIPTIONS = {
    "lenet300-mnist": "Frankle & Carbin 2019, LeNet-300-100 on full MNIST (needs --set data.root=DIR)",
    "openlth-lenet300": "OpenLTH's mnist_lenet_300_100 defaults (SGD 0.1, global 20%)",
    "conv2-cifar10": "Frankle & Carbin 2019, Conv-2 on CIFAR-10",
    "conv4-cifar10": "Frankle & Carbin 2019, Conv-4 on CIFAR-10",
    "conv6-cifar10": "Frankle & Carbin 2019, Conv-6 on CIFAR-10",
    "resnet20-cifar10": "Frankle et al. 2020, ResNet-20 with late rewinding to 500it",
    "vgg16-cifar10": "Frankle et al. 2020, VGG-16 with late rewinding to 1000it",
    "lenet300-mnist-mini": "CPU demo: LeNet-300-100 on the bundled 5,000-image MNIST subset",
    "mlp-mnist1d": "CPU: MLP on the generated MNIST-1D, with the one-shot baseline",
    "mlp-digits": "CPU smoke: a 300-100 MLP on scikit-learn's 8x8 digits (seconds)",
}


def preset_dict(name: str) -> dict:
    if name not in PRESETS:
        raise unknown("preset", name, PRESETS)
    return PRESETS[name]


def load_preset(name: str) -> Config:
    return from_dict(preset_dict(name))


def build_config(preset: str | None, file_data: dict | None = None, overrides: list[str] = ()) -> Config:
    """preset, then a YAML file's settings, then `--set` overrides; validated once at the end."""
    from .config import apply_overrides

    data = preset_dict(preset) if preset else {}
    if file_data:
        data = merge(data, file_data)
    return from_dict(apply_overrides(data, list(overrides)))
