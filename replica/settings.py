"""Settings of the replica's processes, read from the environment.

The same names are used by the local driver (processes on loopback) and by
``docker-compose.yml`` (containers), so one table documents both.

Backend (``python -m replica.backend``):

===============================  ==========================================
``ENVIRONMENT``                  ``staging`` (default), ``production``, ``development``
``REPLICA_HOST`` / ``REPLICA_PORT``  listen address (default 127.0.0.1:8000)
``REPLICA_FD``                   an inherited socket, bound by the harness, to serve on instead
``REPLICA_NOTIFY_FD``            an inherited socket the backend writes one byte to once it serves (readiness)
``REPLICA_DATABASE_URL``         ``postgresql://user:pw@host:port/db`` (via the fault proxy)
``REPLICA_REDIS_URL``            ``redis://host:port/0`` (via the fault proxy)
``REPLICA_AUTH_URL``             ``http://host:port`` of the auth service (via the fault proxy)
``REPLICA_HANDLER``              a built-in variant (``incident``, ``landed-fix``, ... see ``handlers.variants``) or ``pkg.module:function``
``REPLICA_SERVER``               ``uvicorn`` (default) | ``gunicorn`` (UvicornWorker, binds first)
``REPLICA_STARTUP_MODE``         ``blocking`` (awaited in lifespan, default) | ``background``
``REPLICA_FAILPOINTS``           failpoint spec, e.g. ``startup.supervisor=skip; ws.auth=raise(TypeError: boom)``
``REPLICA_DEFECTS``              comma list of code defects to switch on, e.g. ``auth-log-json``
``REPLICA_STARTUP_WAIT_S``       the handler's startup wait (default: the variant's own, 30 s or 5 s)
``REPLICA_HEARTBEAT_S``          server heartbeat ping interval (default 25)
``REPLICA_WS_PING_INTERVAL_S``   uvicorn keepalive ping interval (default 20)
``REPLICA_WS_PING_TIMEOUT_S``    uvicorn keepalive ping timeout (default 20)
``REPLICA_DEPENDENCY_TIMEOUT_S`` connect/command timeout for Postgres and Redis (default 5)
``REPLICA_AUTH_TIMEOUT_S``       timeout of the backend's calls to the auth service (default 5)
``REPLICA_RETRY_AFTER_S``        ``Retry-After`` of the ``recommended`` handler's 503 (default 5)
===============================  ==========================================

Auth service (``python -m replica.auth``): ``AUTH_HOST`` / ``AUTH_PORT``
(default 127.0.0.1:8081) or ``AUTH_FD`` (an inherited socket), and ``JWT_SECRET``
(required; generated per run by the harness, never committed).
"""

from __future__ import annotations

import os
from typing import Literal, Mapping

from pydantic import BaseModel, Field

from replica.backend.handlers.variants import BUILTIN_HANDLERS  # noqa: F401  (re-exported: one registry)


class BackendSettings(BaseModel):
    environment: str = "staging"
    host: str = "127.0.0.1"
    port: int = 8000
    #: A socket the harness bound and handed over (no port race); host/port are then unused.
    fd: int | None = Field(default=None, ge=0)
    #: A socket the harness waits on: one byte once the server serves (its EOF: the process is gone).
    notify_fd: int | None = Field(default=None, ge=0)
    database_url: str = "postgresql://replica:replica@127.0.0.1:5432/replica"
    redis_url: str = "redis://127.0.0.1:6379/0"
    auth_url: str = "http://127.0.0.1:8081"
    handler: str = "incident"
    server: Literal["uvicorn", "gunicorn"] = "uvicorn"
    startup_mode: Literal["blocking", "background"] = "blocking"
    failpoints: str = ""
    defects: str = ""
    startup_wait_s: float | None = Field(default=None, ge=0)
    heartbeat_s: float = Field(default=25.0, gt=0)
    ws_ping_interval_s: float = Field(default=20.0, gt=0)
    ws_ping_timeout_s: float = Field(default=20.0, gt=0)
    dependency_timeout_s: float = Field(default=5.0, gt=0)
    auth_timeout_s: float = Field(default=5.0, gt=0)
    retry_after_s: int = Field(default=5, ge=0)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "BackendSettings":
        env = os.environ if env is None else env
        values: dict[str, str] = {}
        if "ENVIRONMENT" in env:
            values["environment"] = env["ENVIRONMENT"]
        for field in cls.model_fields:
            key = "REPLICA_" + field.upper()
            if key in env and env[key] != "":
                values[field] = env[key]
        return cls.model_validate(values)

    def to_env(self) -> dict[str, str]:
        env = {"ENVIRONMENT": self.environment}
        for field, value in self.model_dump().items():
            if field == "environment" or value is None:
                continue
            env["REPLICA_" + field.upper()] = str(value)
        return env


class AuthSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8081
    #: A socket the harness bound and handed over (``AUTH_FD``); host/port are then unused.
    fd: int | None = None
    jwt_secret: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "AuthSettings":
        env = os.environ if env is None else env
        secret = env.get("JWT_SECRET", "")
        if not secret:
            raise SystemExit("JWT_SECRET is not set: the auth service needs a secret (the harness generates one per run)")
        fd = env.get("AUTH_FD")
        return cls(
            host=env.get("AUTH_HOST", "127.0.0.1"),
            port=int(env.get("AUTH_PORT", "8081")),
            fd=int(fd) if fd else None,
            jwt_secret=secret,
        )
