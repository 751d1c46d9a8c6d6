"""Imports every built-in handler variant (for the backend's fork server)."""

import importlib

from replica.backend.handlers.variants import PRELOAD_MODULES

for _module in PRELOAD_MODULES:
    importlib.import_module(_module)
