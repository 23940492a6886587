"""Cheaper construction of frozen dataclasses (staging's domain values, events, inbox keys).

The ``__init__`` that ``dataclass(frozen=True)`` generates stores each field through
``object.__setattr__`` (the class's own ``__setattr__`` refuses), about a third of a
microsecond a field, and the domain builds tens of these values per event: ledger entries and
allocations on every replay, history, owners, requests, events. Profiles put those
constructors at 6 % of the consumer's CPU. :func:`quick_init` gives a frozen dataclass an
``__init__`` that puts the same values straight into the instance ``__dict__`` (which is where
``object.__setattr__`` puts them for a class without slots), then runs ``__post_init__`` if
there is one. Instances stay frozen (assignment still raises), and compare, hash and print as
before. It takes only what the domain uses: no slots, no ``InitVar``, no keyword-only fields;
defaults and default factories are honoured. ``test_staging_frozen`` checks every decorated
class against the generated ``__init__``. The runtime's :class:`shared.events.Event` and
:class:`shared.inbox.InboxKey`, one each per consumed message, use it too.
"""

from __future__ import annotations

from dataclasses import MISSING, fields, is_dataclass
from typing import Any, TypeVar

T = TypeVar("T")
_UNSET = object()  # a default factory's parameter default: call the factory


def quick_init(cls: type[T]) -> type[T]:
    """Replace a frozen dataclass's generated ``__init__`` (kept as ``_generated_init``)."""
    params = fields(cls)  # type: ignore[arg-type]
    params_of_init = [f for f in params if f.init]
    if (not is_dataclass(cls) or "__slots__" in cls.__dict__ or any(f.kw_only for f in params)
            or any("InitVar" in str(a) for a in cls.__annotations__.values())):
        raise TypeError(f"quick_init does not handle {cls.__name__}")
    env: dict[str, Any] = {"_UNSET": _UNSET}
    args, body = [], []
    for f in params:
        if f.default is not MISSING:
            env[f"_default_{f.name}"] = f.default
            value = f"_default_{f.name}"
        elif f.default_factory is not MISSING:
            env[f"_factory_{f.name}"] = f.default_factory
            value = f"_factory_{f.name}()"
        else:
            value = ""
        if f.init:
            if f.default_factory is not MISSING:
                args.append(f"{f.name}=_UNSET")
                body.append(f"d[{f.name!r}] = {value} if {f.name} is _UNSET else {f.name}")
            else:
                args.append(f"{f.name}={value}" if value else f.name)
                body.append(f"d[{f.name!r}] = {f.name}")
        elif f.default_factory is not MISSING:  # a plain default stays on the class, as in
            body.append(f"d[{f.name!r}] = {value}")  # the generated __init__
    if hasattr(cls, "__post_init__"):
        body.append("self.__post_init__()")
    source = (f"def __init__(self, {', '.join(args)}):\n    d = self.__dict__\n    "
              + "\n    ".join(body or ["pass"]) + "\n")
    exec(source, env)  # noqa: S102 - generated from the dataclass's own field list
    init = env["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls._generated_init = cls.__init__  # type: ignore[attr-defined,misc]
    cls.__init__ = init  # type: ignore[method-assign]
    assert len(params_of_init) == init.__code__.co_argcount - 1
    return cls
