"""What the fork server loads once, so each server fork starts in milliseconds.

Importing this module imports the backend and the auth service, their servers and
clients, and builds the shared TLS context; every fork inherits all of it.
"""

from replica.lean import skip_unused_imports

skip_unused_imports()

import replica.backend.server  # noqa: F401  (first: it quiets uvicorn's ws deprecation notice)
import replica.backend.__main__  # noqa: F401
import replica.backend.handlers.preload  # noqa: F401  (every built-in variant, from the registry)
import replica.auth.__main__  # noqa: F401
import replica.drivers.local.forkserver  # noqa: F401  (each fork's entry point, unpickled in the fork)

import anyio._backends._asyncio  # noqa: F401  (httpx's async backend, imported on a client's first request)
import asyncpg  # noqa: F401
import httpcore._async.connection_pool  # noqa: F401
import httpcore._async.http11  # noqa: F401
import pydantic.v1  # noqa: F401  (FastAPI loads it lazily when an app is built)
import redis.asyncio  # noqa: F401
import uvicorn.lifespan.on  # noqa: F401
import uvicorn.loops.auto  # noqa: F401
import uvicorn.loops.uvloop  # noqa: F401
import uvicorn.protocols.http.auto  # noqa: F401
import uvicorn.protocols.http.httptools_impl  # noqa: F401
import uvicorn.protocols.websockets.websockets_impl  # noqa: F401

import contextlib
import io
import linecache
import sys
import tokenize

with contextlib.suppress(ImportError):  # FastAPI imports it as each app's lifespan starts (where it has one)
    import fastapi.telemetry._runtime  # noqa: F401

import fastapi.routing

from replica.backend.app import routes
from replica.tls import client_ssl_context

client_ssl_context()

# The backend's routes, and FastAPI's record of where each endpoint is defined (read
# from its source on a route's first request, cached per function): once, not per fork.
_endpoint_context = getattr(fastapi.routing, "_extract_endpoint_context", lambda _endpoint: None)
for _route in routes():
    _endpoint_context(_route.endpoint)

# FastAPI reads each endpoint's source on its first request (for error context): compile
# tokenize's patterns and read the backend's source files here, once, not in every fork.
list(tokenize.generate_tokens(io.StringIO("pass\n").readline))
for _module in [m for name, m in sys.modules.items() if name.startswith("replica.backend")]:
    if getattr(_module, "__file__", None):
        linecache.getlines(_module.__file__)
