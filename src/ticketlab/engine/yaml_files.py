"""YAML in, bounded: config and sweep files and `--set` values, read with PyYAML's safe loader plus two limits.

Anchors and aliases are allowed (a list reused under two keys), but a document whose aliases would expand to more
than MAX_VALUES values (a "billion laughs" of 1 KB that expands to gigabytes) or that refers to itself (`a: &a [*a]`)
is refused before any Python object is built from it. Safe loading shares an aliased object rather than copying it,
so what is built stays the size of the file; the limit keeps anything that walks it (hashing, JSON) bounded too."""

from pathlib import Path
from typing import Any

import yaml

from ticketlab.errors import TicketlabError

MAX_VALUES = 100_000  # scalars, lists and mappings after expanding aliases; the largest preset has ~60


class NotYaml(TicketlabError):
    """The text does not parse as YAML (as opposed to YAML that is refused for its size or shape)."""


class BoundedLoader(yaml.SafeLoader):
    """SafeLoader that checks the expanded size of each document's node graph before constructing it."""

    def compose_document(self):
        node = super().compose_document()
        expanded_size(node, {}, set())
        return node


def expanded_size(node: yaml.Node, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """Values under `node` with every alias expanded (memoised per node, so shared nodes cost one visit)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        raise TicketlabError("refers to itself through an alias (e.g. a: &a [*a]); remove the alias")
    open_nodes.add(key)
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    else:
        children = []
    total = 1 + sum(expanded_size(child, sizes, open_nodes) for child in children)
    open_nodes.discard(key)
    if total > MAX_VALUES:
        raise TicketlabError(f"expands to more than {MAX_VALUES:,} values through aliases; write it out or shorten it")
    sizes[key] = total
    return total


def parse(text: str) -> Any:
    """One YAML document from `text`, bounded; every parse failure is a TicketlabError with a one-line reason."""
    loader = None
    try:
        loader = BoundedLoader(text)  # what yaml.load does, with our SafeLoader subclass
        return loader.get_single_data()
    except TicketlabError:
        raise
    except yaml.YAMLError as e:
        raise NotYaml(f"is not valid YAML: {one_line(e)}") from None
    except RecursionError:
        raise TicketlabError("is nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as e:  # e.g. a timestamp 2020-13-45 (safe loading builds dates)
        raise NotYaml(f"holds a value YAML cannot build: {one_line(e)}") from None
    finally:
        if loader is not None:
            loader.dispose()


def load_yaml(path: str | Path, what: str = "config file") -> Any:
    """The document in the file at `path` (None for an empty file); unreadable, non-UTF-8 or bad YAML is one line."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise TicketlabError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise TicketlabError(f"{what} {path} is a directory; give a YAML file") from None
    except UnicodeDecodeError as e:
        raise TicketlabError(f"{what} {path} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start})"
                             ) from None
    except OSError as e:
        raise TicketlabError(f"{what} {path} cannot be read: {e.strerror or e}") from None
    try:
        return parse(text)
    except TicketlabError as e:
        raise TicketlabError(f"{what} {path} {e}") from None


def parse_value(raw: str) -> Any:
    """A `--set` value: YAML (0.1, [a, b], null, true), or the text itself when it does not parse as YAML; aliases
    past the limits are refused."""
    try:
        return parse(raw)
    except NotYaml:
        return raw


def one_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return "; ".join(lines[:2]) if lines else type(error).__name__
