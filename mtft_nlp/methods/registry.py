"""The registry of adaptation methods: the built-in ones (registered by :mod:`mtft_nlp.methods`), those added with
:func:`register_method`, and those that installed packages declare under the entry-point group ``mtft_nlp.methods``
(``[options.entry_points] mtft_nlp.methods = name = package.module:MethodClass``), loaded on first use."""

from __future__ import annotations

import inspect
from typing import Dict, List

from ..tasks import MtftError
from .base import Method

__all__ = ["ENTRY_POINT_GROUP", "register_method", "unregister_method", "get_method", "all_methods"]

ENTRY_POINT_GROUP = "mtft_nlp.methods"
_REGISTRY: Dict[str, Method] = {}
_entry_points_loaded = False


def register_method(method) -> Method:
    """Add ``method`` (a :class:`Method` instance or subclass); its name and row kinds must be new. Returns it."""
    if isinstance(method, type) and issubclass(method, Method) and inspect.isabstract(method):
        raise MtftError(f"register_method: {method.__name__} does not implement run()")
    method = method() if isinstance(method, type) else method
    if not isinstance(method, Method) or not method.name:
        raise MtftError(f"register_method: expected a named mtft_nlp.methods.Method, got {method!r}")
    if method.name in _REGISTRY and type(_REGISTRY[method.name]) is not type(method):
        raise MtftError(f"register_method: a method named {method.name!r} is already registered")
    staged = [k.name for k in method.kinds if k.multitask and not method.stage_section]
    if staged:
        raise MtftError(
            f"register_method: kinds {staged} of {method.name!r} start from a multitask checkpoint (multitask=True) "
            "but the method has no stage (stage_section)"
        )
    taken = {k.name: m.name for m in _REGISTRY.values() if m.name != method.name for k in m.kinds}
    clash = [k.name for k in method.kinds if k.name in taken]
    if clash:
        raise MtftError(f"register_method: row kinds {clash} of {method.name!r} belong to another method")
    _REGISTRY[method.name] = method
    return method


def unregister_method(name: str) -> None:
    """Remove a method added with :func:`register_method` (a notebook's or a test's); unknown names are ignored."""
    _REGISTRY.pop(name, None)


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            register_method(ep.load())
        except Exception as exc:  # a broken plug-in is named, not a traceback
            raise MtftError(f"method plug-in {ep.name!r} ({ep.value}) could not be loaded: {exc}") from None


def all_methods() -> List[Method]:
    """Every registered method, in registration order (the built-in ones first)."""
    _load_entry_points()
    return list(_REGISTRY.values())


def get_method(name: str) -> Method:
    for m in all_methods():
        if m.name == name:
            return m
    raise MtftError(f"unknown method {name!r}; methods: {', '.join(m.name for m in all_methods())}")
