"""Run database work from the collector's event loop, off the loop.

The database never runs on the event loop (a slow query would stall every
WebSocket frame behind it): each unit of work goes to a worker thread. Those
threads live as long as the collector, so a connection that broke (the
server restarted) must be dropped before the next unit of work, which
Django otherwise does only around HTTP requests.
"""

from __future__ import annotations

import asyncio
from typing import Callable, TypeVar

from django.db import close_old_connections

T = TypeVar("T")


async def run_db(fn: Callable[..., T], *args, **kwargs) -> T:
    """Call `fn(*args, **kwargs)` in a worker thread with a usable connection."""

    def work() -> T:
        close_old_connections()
        return fn(*args, **kwargs)

    return await asyncio.to_thread(work)
