"""``FrozenMap``: a read-only, hashable mapping of ``str`` keys, the one base of the value types that hold a small
map: ``FrozenTags`` (tag key to value) and ``Units`` (usage name to count).

Example::

    >>> m = FrozenMap({"team": "search"})
    >>> m["team"], dict(m), hash(m) == hash(FrozenMap({"team": "search"}))
    ('search', {'team': 'search'}, True)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from operator import attrgetter
from typing import Any, Generic, TypeVar

__all__ = ["FrozenMap", "held"]

V = TypeVar("V")
M = TypeVar("M", bound="FrozenMap[Any]")
_new = object.__new__


class FrozenMap(Mapping[str, V], Generic[V]):
    """A read-only, hashable mapping; equal to any mapping with the same items (as ``keep`` keeps them).

    Subclasses declare ``__slots__ = ()`` and may override ``keep``, which turns the given items into the ones held
    (``Units`` drops zero counts).
    """

    __slots__ = ("_data", "_hash")

    def __init__(self, data: Mapping[str, V] | None = None) -> None:
        self._data: dict[str, V] = self.keep(data) if data else {}
        self._hash: int | None = None

    @staticmethod
    def keep(data: Mapping[str, V]) -> dict[str, V]:
        """The items of ``data`` this map holds (all of them, here)."""
        return dict(data)

    @classmethod
    def holding(cls: type[M], data: dict[str, Any]) -> M:
        """A map holding ``data`` itself (no copy, no ``keep``): for a hot path whose dict is already as ``keep``
        would keep it and is not changed afterwards."""
        made = _new(cls)
        made._data = data
        made._hash = None
        return made

    def __getitem__(self, key: str) -> V:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def get(self, key: str, default: Any = None) -> Any:
        """``self[key]``, or ``default`` when it is missing (the dict's own ``get``: ``Mapping.get`` goes through
        ``__getitem__`` and an exception, and pricing reads units this way on every call that has them)."""
        return self._data.get(key, default)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._data.items()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if type(other) is type(self):
            return self._data == other._data  # type: ignore[attr-defined]
        if isinstance(other, Mapping):
            return self._data == self.keep(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._data!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self._data,))


#: The dict a ``FrozenMap`` holds, read without a method call (a hot path's ``held(units).get``): not to be changed.
held: Any = attrgetter("_data")
