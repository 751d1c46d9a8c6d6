"""The two services the ``/ws`` route depends on.

- :class:`ThreadService`: threads and their messages in Postgres (asyncpg), so a
  conversation survives a backend restart.
- :class:`AgentSupervisor`: connection registry and agent runs recorded in Redis
  (redis.asyncio); a run emits the five agent events of the incident's protocol.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from typing import Any, Awaitable, Callable, TypeVar

import asyncpg
import redis.asyncio as aioredis
import redis.exceptions

from replica.backend import messages

SCHEMA = """
CREATE TABLE IF NOT EXISTS threads (
    id          text PRIMARY KEY,
    user_id     text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS messages (
    id          bigserial PRIMARY KEY,
    thread_id   text NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
    role        text NOT NULL,
    content     text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
"""
_SCHEMA_LOCK = 0x7265706C  # advisory lock: two backends starting together do not race on CREATE TABLE

Emit = Callable[[dict[str, Any]], Awaitable[None]]
_F = TypeVar("_F", bound=Callable[..., Awaitable[Any]])

POSTGRES_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.QueryCanceledError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncio.TimeoutError,
    OSError,
)
REDIS_ERRORS: tuple[type[BaseException], ...] = (redis.exceptions.RedisError, asyncio.TimeoutError, OSError)


class DependencyUnavailable(RuntimeError):
    """A dependency failed or timed out while serving (readiness lost, not a bug)."""

    def __init__(self, dependency: str, cause: BaseException) -> None:
        super().__init__(f"{dependency} unavailable: {type(cause).__name__}: {cause}")
        self.dependency = dependency


def _unavailable_on(dependency: str, errors: tuple[type[BaseException], ...]) -> Callable[[_F], _F]:
    """Turn the dependency's connection errors and timeouts into :class:`DependencyUnavailable`."""

    def decorate(method: _F) -> _F:
        @functools.wraps(method)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await method(*args, **kwargs)
            except errors as exc:
                raise DependencyUnavailable(dependency, exc) from exc

        return wrapper  # type: ignore[return-value]

    return decorate


_database = _unavailable_on("database", POSTGRES_ERRORS)
_redis = _unavailable_on("redis", REDIS_ERRORS)


async def create_schema(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
            await conn.execute(SCHEMA)


class ThreadAccessError(PermissionError):
    """A thread that exists but belongs to another user."""


class ThreadService:
    def __init__(self, pool: asyncpg.Pool, *, timeout_s: float = 5.0) -> None:
        self.pool = pool
        self.timeout_s = timeout_s

    @_database
    async def create_thread(self, user_id: str, thread_id: str | None = None) -> str:
        """Create the thread (or reuse the user's own thread of that id)."""
        thread_id = thread_id or f"thread_{uuid.uuid4().hex}"
        async with self.pool.acquire(timeout=self.timeout_s) as conn:
            await conn.execute(
                "INSERT INTO threads (id, user_id) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
                thread_id,
                user_id,
                timeout=self.timeout_s,
            )
            owner = await conn.fetchval("SELECT user_id FROM threads WHERE id = $1", thread_id, timeout=self.timeout_s)
        if owner != user_id:
            raise ThreadAccessError(f"thread {thread_id!r} belongs to another user")
        return thread_id

    @_database
    async def add_message(self, thread_id: str, role: str, content: str) -> None:
        async with self.pool.acquire(timeout=self.timeout_s) as conn:
            await conn.execute(
                "INSERT INTO messages (thread_id, role, content) VALUES ($1, $2, $3)",
                thread_id,
                role,
                content,
                timeout=self.timeout_s,
            )

    @_database
    async def get_thread(self, thread_id: str, user_id: str) -> list[dict[str, str]] | None:
        """The messages of the user's thread in order, or ``None`` if the user has no such thread."""
        async with self.pool.acquire(timeout=self.timeout_s) as conn:
            owner = await conn.fetchval("SELECT user_id FROM threads WHERE id = $1", thread_id, timeout=self.timeout_s)
            if owner != user_id:
                return None
            rows = await conn.fetch(
                "SELECT role, content FROM messages WHERE thread_id = $1 ORDER BY id", thread_id, timeout=self.timeout_s
            )
        return [{"role": row["role"], "content": row["content"]} for row in rows]

    @_database
    async def ping(self) -> None:
        async with self.pool.acquire(timeout=self.timeout_s) as conn:
            await conn.fetchval("SELECT 1", timeout=self.timeout_s)


def answer_for(content: str) -> str:
    """The agent's deterministic answer: enough to check a round trip."""
    words = len(content.split())
    return f"Received {words} word{'s' if words != 1 else ''}: {content}"


class AgentSupervisor:
    AGENT_NAME = "supervisor_agent"
    TOOL_NAME = "text_analyzer"
    RUN_TTL_S = 3600

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    @_redis
    async def register_connection(self, connection_id: str, user_id: str) -> None:
        await self.redis.hset("replica:connections", connection_id, user_id)

    @_redis
    async def unregister_connection(self, connection_id: str) -> None:
        await self.redis.hdel("replica:connections", connection_id)

    @_redis
    async def _record(self, run_id: str, **fields: str) -> None:
        key = f"replica:run:{run_id}"
        await self.redis.hset(key, mapping=fields)
        await self.redis.expire(key, self.RUN_TTL_S)

    async def run_agent(
        self,
        *,
        user_id: str,
        content: str,
        thread_id: str | None,
        emit: Emit,
        before_complete: Callable[[str], Awaitable[None]] | None = None,
    ) -> str:
        """Run the agent on ``content``, emitting the five events; returns the answer.

        ``before_complete(answer)`` runs before ``agent_completed`` is sent (the
        route stores the assistant message there), so a client that sees
        ``agent_completed`` can read the whole thread back.
        """
        run_id = f"run_{uuid.uuid4().hex}"
        started = time.perf_counter()
        name = self.AGENT_NAME
        await self._record(run_id, status="running", user_id=user_id, thread_id=thread_id or "")
        await emit(
            messages.agent_started(
                run_id, name, context={"thread_id": thread_id, "user_id": user_id}, message="Processing your request"
            )
        )
        await emit(messages.agent_thinking(run_id, name, reasoning="Reading the request", step_number=1, progress_percentage=25))
        parameters = {"characters": len(content)}
        await emit(messages.tool_executing(run_id, name, tool_name=self.TOOL_NAME, parameters=parameters))
        tool_started = time.perf_counter()
        answer = answer_for(content)
        result = {"words": len(content.split()), "characters": len(content)}
        await emit(
            messages.tool_completed(
                run_id, name, tool_name=self.TOOL_NAME, result=result,
                execution_time_ms=round((time.perf_counter() - tool_started) * 1000, 3),
            )
        )
        if before_complete is not None:
            await before_complete(answer)
        await self._record(run_id, status="completed")
        await emit(
            messages.agent_completed(
                run_id, name, result=answer, execution_time_ms=round((time.perf_counter() - started) * 1000, 3),
                thread_id=thread_id,
            )
        )
        return answer

    @_redis
    async def ping(self) -> None:
        await self.redis.ping()


async def run_mock_agent(*, user_id: str, content: str, emit: Emit) -> str:
    """The landed fix's fallback handler: mock agent events, nothing stored."""
    run_id = f"mock_{uuid.uuid4().hex}"
    name = "fallback_agent"
    answer = answer_for(content)
    await emit(messages.agent_started(run_id, name, context={"user_id": user_id, "degraded": True}, message="Processing (degraded mode)"))
    await emit(messages.agent_thinking(run_id, name, reasoning="Degraded mode: services unavailable", step_number=1, progress_percentage=50))
    await emit(messages.tool_executing(run_id, name, tool_name="fallback", parameters={}))
    await emit(messages.tool_completed(run_id, name, tool_name="fallback", result={"mock": True}, execution_time_ms=0.0))
    await emit(messages.agent_completed(run_id, name, result=answer, execution_time_ms=0.0, thread_id=None))
    return answer
