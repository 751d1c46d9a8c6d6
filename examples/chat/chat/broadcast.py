"""Fan-out through Redis pub/sub, and a cache of the room's recent history."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from typing import AsyncIterator

import redis.asyncio as redis

from faults import failpoint


class Broadcast:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    @classmethod
    async def connect(cls, url: str, timeout_s: float) -> "Broadcast":
        client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        try:
            await client.ping()
        except BaseException:
            await client.aclose()
            raise
        return cls(client)

    async def publish(self, room: str, event: dict) -> None:
        await failpoint("ws.publish")
        await self.client.publish(f"chat:{room}", json.dumps(event))

    @asynccontextmanager
    async def subscribe(self, room: str) -> AsyncIterator[AsyncIterator[dict]]:
        pubsub = self.client.pubsub()
        await pubsub.subscribe(f"chat:{room}")

        async def events() -> AsyncIterator[dict]:
            async for message in pubsub.listen():
                if message["type"] == "message":
                    yield json.loads(message["data"])

        try:
            yield events()
        finally:
            await pubsub.aclose()

    async def cache_history(self, room: str, messages: list[dict]) -> None:
        await self.client.set(f"chat:{room}:recent", json.dumps(messages))

    async def cached_history(self, room: str) -> list[dict] | None:
        cached = await self.client.get(f"chat:{room}:recent")
        return None if cached is None else json.loads(cached)

    async def ping(self) -> None:
        await self.client.ping()

    async def close(self) -> None:
        await self.client.aclose()
