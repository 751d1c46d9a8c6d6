"""One TLS client context per process.

httpx builds a fresh context (and loads the CA bundle) for every client, about
100 ms each time. The replica makes many short-lived clients — one per probe, per
readiness wait, per backend start — so they share this one; a backend forked
from a preloaded process inherits it ready-made. A client of a plain ``http`` URL
or a unix socket never speaks TLS and gets :func:`tls_for`'s empty context instead:
nothing to load, so a command that only talks to loopback pays nothing for TLS.
"""

from __future__ import annotations

import functools
import ssl

import certifi


@functools.cache
def client_ssl_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certifi.where())


@functools.cache
def _trusts_nothing() -> ssl.SSLContext:
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies certificates, and trusts none


def tls_for(url: str) -> ssl.SSLContext:
    """The context for a client of ``url``: :func:`client_ssl_context` for ``https``/``wss``;
    for any other, a context that trusts no certificate (never used; a redirect to https
    would fail closed)."""
    return client_ssl_context() if url.lower().startswith(("https:", "wss:")) else _trusts_nothing()
