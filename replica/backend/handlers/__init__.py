"""The code that runs at ``/ws``: the built-in variants and the loader for user handlers."""

from replica.backend.handlers.registry import Handler, HandlerLoadError, load_handler
from replica.backend.handlers.variants import BUILTIN_HANDLERS, VARIANTS, Variant, variant

__all__ = ["BUILTIN_HANDLERS", "VARIANTS", "Handler", "HandlerLoadError", "Variant", "load_handler", "variant"]
