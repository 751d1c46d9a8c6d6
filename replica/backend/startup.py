"""Deterministic startup, phase by phase, filling ``app.state`` (incident.md §2).

INIT → DEPENDENCIES (auth config: ``GET {auth_url}/health``) → DATABASE (asyncpg
pool, tables) → CACHE (Redis PING) → SERVICES (``agent_supervisor``,
``thread_service``) → FINALIZE; ``startup_complete = True`` only at the very end.
Each phase hits its failpoint first. Every dependency is reached through the URL
in the settings, with explicit timeouts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncpg
import redis.asyncio as aioredis
from redis.driver_info import DriverInfo
from fastapi import FastAPI

from faults import failpoint
from replica.backend.auth_client import auth_http
from replica.backend.services import AgentSupervisor, ThreadService, create_schema
from replica.settings import BackendSettings

logger = logging.getLogger("replica.startup")
#: redis-py reads its own version from the package metadata for each client unless told (~3 ms a fork).
REDIS_DRIVER = DriverInfo()

PHASES: tuple[str, ...] = ("INIT", "DEPENDENCIES", "DATABASE", "CACHE", "SERVICES", "FINALIZE")
PhaseStatus = Literal["pending", "running", "ok", "failed", "cancelled"]


class StartupError(RuntimeError):
    """A phase could not complete."""


@dataclass
class PhaseReport:
    name: str
    status: PhaseStatus = "pending"
    duration_ms: float | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "status": self.status, "duration_ms": self.duration_ms}
        if self.error:
            out["error"] = self.error
        if self.notes:
            out["notes"] = list(self.notes)
        return out


@dataclass
class StartupReport:
    mode: str
    phases: list[PhaseReport] = field(default_factory=lambda: [PhaseReport(name) for name in PHASES])
    complete: bool = False

    def phase(self, name: str) -> PhaseReport:
        return next(p for p in self.phases if p.name == name)

    @property
    def failed(self) -> PhaseReport | None:
        return next((p for p in self.phases if p.status == "failed"), None)

    @property
    def status(self) -> str:
        return "ready" if self.complete else "failed" if self.failed else "starting"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": self.status,
            "startup_complete": self.complete,
            "startup_mode": self.mode,
            "phases": [p.to_dict() for p in self.phases],
        }
        if self.failed:
            out["failed_phase"] = self.failed.name
            out["error"] = self.failed.error
        return out


def init_state(app: FastAPI, settings: BackendSettings) -> StartupReport:
    """Set the attributes the route reads, before anything can fail."""
    report = StartupReport(mode=settings.startup_mode)
    app.state.environment = settings.environment
    app.state.agent_supervisor = None
    app.state.thread_service = None
    app.state.startup_complete = False
    app.state.startup_report = report
    app.state.db_pool = None
    app.state.redis = None
    app.state.connections = {}
    return report


async def _phase(report: StartupReport, name: str, work) -> None:
    phase = report.phase(name)
    phase.status = "running"
    started = time.perf_counter()
    logger.info("startup phase %s: started", name)
    try:
        await work(phase)
    except asyncio.CancelledError:
        phase.status = "cancelled"
        phase.duration_ms = round((time.perf_counter() - started) * 1000, 1)
        raise
    except Exception as exc:
        phase.status = "failed"
        phase.error = f"{type(exc).__name__}: {exc}"
        phase.duration_ms = round((time.perf_counter() - started) * 1000, 1)
        logger.error("startup phase %s failed after %.1f ms: %s", name, phase.duration_ms, phase.error)
        raise StartupError(f"startup phase {name} failed: {phase.error}") from exc
    phase.status = "ok"
    phase.duration_ms = round((time.perf_counter() - started) * 1000, 1)
    logger.info("startup phase %s: ok in %.1f ms", name, phase.duration_ms)


async def run_startup(app: FastAPI, settings: BackendSettings) -> None:
    """Run every phase in order; raise :class:`StartupError` on the first failure."""
    report: StartupReport = app.state.startup_report
    timeout = settings.dependency_timeout_s

    async def init(phase: PhaseReport) -> None:
        phase.notes.append(f"environment={settings.environment}")

    async def dependencies(phase: PhaseReport) -> None:
        await failpoint("startup.dependencies")
        async with auth_http(settings) as client:
            response = await client.get(settings.auth_url.rstrip("/") + "/health")
        if response.status_code != 200:
            raise StartupError(f"auth service health returned HTTP {response.status_code}")

    async def database(phase: PhaseReport) -> None:
        await failpoint("startup.database")
        pool = await asyncpg.create_pool(
            settings.database_url, min_size=1, max_size=10, timeout=timeout, command_timeout=timeout
        )
        app.state.db_pool = pool
        await asyncio.wait_for(create_schema(pool), timeout)

    async def cache(phase: PhaseReport) -> None:
        await failpoint("startup.cache")
        client = aioredis.Redis.from_url(
            settings.redis_url, socket_connect_timeout=timeout, socket_timeout=timeout, driver_info=REDIS_DRIVER
        )
        app.state.redis = client
        await client.ping()

    async def services(phase: PhaseReport) -> None:
        if await failpoint("startup.supervisor"):
            phase.notes.append("agent_supervisor skipped (failpoint)")
        else:
            app.state.agent_supervisor = AgentSupervisor(app.state.redis)
        if await failpoint("startup.thread_service"):
            phase.notes.append("thread_service skipped (failpoint)")
        else:
            app.state.thread_service = ThreadService(app.state.db_pool, timeout_s=timeout)

    async def finalize(phase: PhaseReport) -> None:
        await failpoint("startup.finalize")
        async with app.state.db_pool.acquire(timeout=timeout) as conn:
            await conn.fetchval("SELECT 1")
        await app.state.redis.ping()

    for name, work in zip(PHASES, (init, dependencies, database, cache, services, finalize)):
        await _phase(report, name, work)
    report.complete = True
    app.state.startup_complete = True
    logger.info("startup complete")


async def close_resources(app: FastAPI) -> None:
    pool = getattr(app.state, "db_pool", None)
    if pool is not None:
        try:
            await asyncio.wait_for(pool.close(), 5)
        except Exception as exc:  # a hung dependency must not stop shutdown
            logger.warning("closing the Postgres pool failed: %s", exc)
            pool.terminate()
    client = getattr(app.state, "redis", None)
    if client is not None:
        try:
            await asyncio.wait_for(client.aclose(), 5)
        except Exception as exc:
            logger.warning("closing the Redis client failed: %s", exc)
