"""``noop``: passes data unchanged (useful to test clients and chains)."""

from __future__ import annotations

from .base import Toxic


class NoopToxic(Toxic):
    type_name = "noop"
    go_struct = "NoopToxic"
