"""Run database work from the collector's event loop, off the loop.

The database never runs on the event loop (a slow query would stall every
WebSocket frame behind it): each unit of work goes to a worker thread. Those
threads live as long as the collector, so a connection that broke (the
server restarted) must be dropped before the next unit of work, which
Django otherwise does only around HTTP requests. The work done here is
rare (metadata, settlements, backfill pages), so each unit simply closes its
connection when done: no thread keeps one open, and a restarted server is
never met with a stale socket.
"""

from __future__ import annotations

import asyncio
from typing import Callable, TypeVar

from django.db import connection

T = TypeVar("T")


async def run_db(fn: Callable[..., T], *args, **kwargs) -> T:
    """Call `fn(*args, **kwargs)` in a worker thread with a usable connection."""

    def work() -> T:
        try:
            return fn(*args, **kwargs)
        finally:
            connection.close()

    return await asyncio.to_thread(work)
