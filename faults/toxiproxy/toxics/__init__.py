"""The toxics, one module each, and the registry of their type names."""

from __future__ import annotations

from .bandwidth import BandwidthToxic
from .base import Attribute, Chunk, Stub, Toxic
from .latency import LatencyToxic
from .limit_data import LimitDataToxic
from .noop import NoopToxic
from .reset_peer import ResetPeerToxic
from .slicer import SlicerToxic
from .slow_close import SlowCloseToxic
from .timeout import TimeoutToxic

REGISTRY: dict[str, type[Toxic]] = {
    kind.type_name: kind
    for kind in (
        LatencyToxic,
        BandwidthToxic,
        SlowCloseToxic,
        TimeoutToxic,
        ResetPeerToxic,
        SlicerToxic,
        LimitDataToxic,
        NoopToxic,
    )
}

__all__ = ["REGISTRY", "Attribute", "Chunk", "Stub", "Toxic"]
