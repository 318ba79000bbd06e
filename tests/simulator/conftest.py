"""A real simulator on 127.0.0.1 (ephemeral port), and a real WebSocket client for it."""

from __future__ import annotations

import asyncio
import itertools
import json

import aiohttp
import pytest_asyncio
from websockets.asyncio.client import connect

from kalshi import auth
from simulator import Simulator
from simulator.config import WS_PATH

# Generous: only reached when something is broken, never a timing assertion.
RECV_TIMEOUT = 10.0


@pytest_asyncio.fixture
async def make_sim():
    """Start simulators that only move when the test calls step() (rate=0)."""
    started: list[Simulator] = []

    async def make(**kwargs) -> Simulator:
        kwargs.setdefault("rate", 0)
        kwargs.setdefault("rest_rate_per_s", None)
        sim = Simulator(**kwargs)
        await sim.start(host="127.0.0.1", port=0)
        started.append(sim)
        return sim

    yield make
    for sim in started:
        await sim.stop()


async def rest_get(sim: Simulator, path: str, params=None, *, signed: bool = True, headers=None):
    """GET a REST path (after /trade-api/v2); returns (status, json body)."""
    full_path = "/trade-api/v2" + path
    if headers is None:
        headers = sim.signed_headers("GET", full_path) if signed else {}
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"http://{sim.urls.host}:{sim.urls.port}{full_path}", params=params, headers=headers
        ) as r:
            return r.status, await r.json(content_type=None)


class Client:
    """A signed WebSocket client with command ids and a FIFO barrier."""

    def __init__(self, ws):
        self.ws = ws
        self.ids = itertools.count(1)

    async def send(self, cmd: str, params: dict | None = None) -> int:
        command_id = next(self.ids)
        body = {"id": command_id, "cmd": cmd}
        if params is not None:
            body["params"] = params
        await self.ws.send(json.dumps(body))
        return command_id

    async def recv_raw(self) -> str:
        return await asyncio.wait_for(self.ws.recv(), RECV_TIMEOUT)

    async def recv(self) -> dict:
        return json.loads(await self.recv_raw())

    async def recv_n(self, n: int) -> list[dict]:
        return [await self.recv() for _ in range(n)]

    async def until_barrier(self, *, raw: bool = False) -> list:
        """Everything the server queued before now: ends at a list_subscriptions reply.

        Frames for one connection leave in the order they were queued, so the
        reply to a command sent now comes after every frame already queued.
        """
        barrier = await self.send("list_subscriptions")
        out = []
        while True:
            text = await self.recv_raw()
            try:
                body = json.loads(text)
            except ValueError:
                body = None
            if isinstance(body, dict) and body.get("id") == barrier and isinstance(body.get("msg"), list):
                return out
            out.append(text if raw else body)


def ws_connect(sim: Simulator, headers=None):
    if headers is None:
        headers = sim.signed_headers("GET", WS_PATH)
    return connect(sim.urls.ws, additional_headers=headers, max_size=None, ping_interval=None)


def wrong_key_headers(method: str, path: str, key_id: str) -> dict:
    return auth.signed_headers(key_id, auth.generate_private_key(), method, path)
