"""Registries of model parts: one per kind (arrival processes, distributions, dispatch policies,
autoscalers). A scenario names a part by its registered name; a user part is a callable, or a
`module:function` string for the kinds that accept one (loaded with `pkgutil.resolve_name`)."""
from __future__ import annotations

import difflib
import pkgutil
import re
from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")

_SPEC = re.compile(r"[\w.]+:[\w.]+")


class UnknownName(LookupError):
    """A name no part of this kind is registered under; the message lists the known ones."""

    def __init__(self, registry: "Registry", name: object):
        self.name = name
        close = difflib.get_close_matches(name, registry.names(), n=1) if isinstance(name, str) else []
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        self.hint = hint
        super().__init__(f"unknown {registry.kind} {name!r}{hint}; known: {', '.join(registry.names())}")


class Registry(Generic[T]):
    """Named parts of one kind, in registration order; each entry carries a one-line doc that the
    scenario key table (docs/SIMULATOR.md) shows."""

    def __init__(self, kind: str, user_spec: bool = False):
        self.kind = kind
        self.user_spec = user_spec       # 'module:function' accepted for a part of your own
        self._items: dict[str, T] = {}
        self._docs: dict[str, str] = {}

    def register(self, name: str, item: T, doc: str = "") -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        self._docs[name] = doc
        return item

    def unregister(self, name: str) -> None:
        del self._items[name]
        del self._docs[name]

    def names(self) -> list[str]:
        return list(self._items)

    def doc(self, name: str) -> str:
        return self._docs[name]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise UnknownName(self, name) from None

    def items(self) -> list[tuple[str, T]]:
        return list(self._items.items())

    def is_spec(self, value: object) -> bool:
        """A registered name, a callable, or (if accepted) a 'module:function' string."""
        return value in self or callable(value) or (self.user_spec and isinstance(value, str)
                                                    and bool(_SPEC.fullmatch(value)))

    def resolve(self, spec: Any) -> Any:
        """The registered part, the callable itself, or the object a 'module:function' names."""
        if callable(spec) and not isinstance(spec, str):
            return spec
        if spec in self:
            return self._items[spec]
        if not (self.user_spec and isinstance(spec, str) and ":" in spec):
            raise UnknownName(self, spec)
        return load(spec)


def load(spec: str) -> Callable:
    """The callable a 'module:function' string names; ValueError naming the spec otherwise."""
    try:
        fn = pkgutil.resolve_name(spec)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(f"{spec!r}: cannot load it ({exc})") from None
    if not callable(fn):
        raise ValueError(f"{spec!r}: {spec.partition(':')[2]} is not callable")
    return fn
