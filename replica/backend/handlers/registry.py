"""Resolve ``REPLICA_HANDLER``: a built-in variant name or a user's ``package.module:function``."""

from __future__ import annotations

import importlib
import inspect
from typing import TYPE_CHECKING, Awaitable, Callable

from replica.backend.handlers.variants import BUILTIN_HANDLERS, variant

if TYPE_CHECKING:
    from starlette.websockets import WebSocket

Handler = Callable[["WebSocket"], Awaitable[None]]


class HandlerLoadError(ValueError):
    """The handler named in the settings cannot be used."""


def load_handler(name: str) -> Handler:
    """A built-in variant, or ``package.module:function`` naming an ``async def f(websocket)``."""
    name = (name or "").strip()
    builtin = variant(name)
    if builtin is not None:
        module_name, _, attr = builtin.target.partition(":")
        return getattr(importlib.import_module(module_name), attr)
    if ":" not in name:
        raise HandlerLoadError(
            f"unknown handler {name!r}: use one of {', '.join(BUILTIN_HANDLERS)} or package.module:function"
        )
    module_name, _, attr = name.partition(":")
    if not module_name or not attr:
        raise HandlerLoadError(f"bad handler {name!r}: expected package.module:function")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise HandlerLoadError(f"handler {name!r}: module {exc.name or module_name!r} not found") from None
    except Exception as exc:
        raise HandlerLoadError(f"handler {name!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    target = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise HandlerLoadError(f"handler {name!r}: module {module_name!r} has no attribute {attr!r}") from None
    if not inspect.iscoroutinefunction(target) and not inspect.iscoroutinefunction(getattr(target, "__call__", None)):
        raise HandlerLoadError(f"handler {name!r} is not an async callable (expected: async def {attr}(websocket))")
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return target
    required = [p for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
    if len(required) > 1 or not positional:
        raise HandlerLoadError(f"handler {name!r} must take exactly one argument (the websocket)")
    return target
