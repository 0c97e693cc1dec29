"""A name -> entry table that users extend with one decorator (models, data sets, criteria, baselines, rewind modes).

A name is registered once: registering it again is refused unless `replace=True` says so, so a user's entry never
silently replaces a built-in one (or another user's) and a typo'd duplicate does not go unnoticed."""

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from ticketlab.errors import TicketlabError, unknown

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, *, replace: bool = False) -> Callable[[T], T]:
        """Decorator: `@MODELS.register("lenet300")`; `replace=True` to replace an entry of that name on purpose."""

        def add(entry: T) -> T:
            self.add(name, entry, replace=replace)
            return entry

        return add

    def add(self, name: str, entry: T, *, replace: bool = False) -> T:
        if not isinstance(name, str) or not name:
            raise TicketlabError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if name in self._entries and not replace:
            raise TicketlabError(f"{self.kind} {name!r} is already registered; pass replace=True to replace it")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise unknown(self.kind, name, self._entries)
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        """The registered names, sorted: a registry is the list of allowed values wherever one is checked."""
        return iter(self.names())
