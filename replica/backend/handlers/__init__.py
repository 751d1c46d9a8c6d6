"""The code that runs at ``/ws``: the built-in variants and the loader for user handlers."""

from replica.backend.handlers.registry import BUILTIN_MODULES, Handler, HandlerLoadError, load_handler

__all__ = ["BUILTIN_MODULES", "Handler", "HandlerLoadError", "load_handler"]
