"""The room's history in Postgres."""

from __future__ import annotations

import asyncpg

SCHEMA = """
CREATE TABLE IF NOT EXISTS chat_messages (
    id BIGSERIAL PRIMARY KEY,
    room TEXT NOT NULL,
    author TEXT NOT NULL,
    body TEXT NOT NULL,
    sent_at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""


class History:
    def __init__(self, pool: asyncpg.Pool, timeout_s: float) -> None:
        self.pool = pool
        self.timeout_s = timeout_s

    @classmethod
    async def connect(cls, url: str, timeout_s: float) -> "History":
        pool = await asyncpg.create_pool(url, min_size=1, max_size=4, timeout=timeout_s, command_timeout=timeout_s)
        try:
            async with pool.acquire() as connection, connection.transaction():
                # Backends starting side by side against one database: CREATE TABLE IF NOT EXISTS
                # alone races on the catalog (UniqueViolation), so creators take turns.
                await connection.execute("SELECT pg_advisory_xact_lock(hashtext('chat_messages schema'))")
                await connection.execute(SCHEMA)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, timeout_s)

    async def add(self, room: str, author: str, body: str) -> dict:
        row = await self.pool.fetchrow(
            "INSERT INTO chat_messages (room, author, body) VALUES ($1, $2, $3) RETURNING id, author, body",
            room, author, body,
        )
        return dict(row)

    async def recent(self, room: str, limit: int) -> list[dict]:
        rows = await self.pool.fetch(
            "SELECT id, author, body FROM chat_messages WHERE room = $1 ORDER BY id DESC LIMIT $2", room, limit
        )
        return [dict(r) for r in reversed(rows)]

    async def ping(self) -> None:
        await self.pool.fetchval("SELECT 1")

    async def close(self) -> None:
        await self.pool.close()
