"""One TLS client context per process.

httpx builds a fresh context (and loads the CA bundle) for every client, about
100 ms each time. The replica makes many short-lived clients — one per probe, per
readiness wait, per backend start — so they share this one; a backend forked
from a preloaded process inherits it ready-made.
"""

from __future__ import annotations

import functools
import ssl

import certifi


@functools.cache
def client_ssl_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certifi.where())
