"""Putting converted modules in place of others in a model's module tree."""

from torch import nn


def _key(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _replace_run(seq: nn.Sequential, run: list[tuple[str, nn.Module]], name: str, module: nn.Module) -> None:
    """Put `module`, named `name`, where `run` (consecutive children of `seq`) was."""
    run_names = {n for n, _ in run}
    children = [(name, module) if n == run[0][0] else (n, m) for n, m in seq.named_children()
                if n == run[0][0] or n not in run_names]
    seq._modules.clear()
    for n, m in children:
        seq.add_module(n, m)


def _replace(model: nn.Module, name: str, layer: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, layer)
