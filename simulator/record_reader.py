"""The replay stream read in a child process, for `kalshi_replay` (simulator/recorded.py).

Reading the record (markets/replay_stream.py: PostgreSQL queries and the
k-way merge of every market's sources) costs about as much CPU per line as
serving the line as a Kalshi frame. In the server's process the two share
one interpreter lock; in a child process they run side by side, which is
what lets a replay keep up with a client that reads as fast as our collector
ingests (bench/replay_bench.py). The child sends the stream's JSON lines in
batches through a pipe, whose small buffer is the back-pressure: the child
waits while the server is behind.
"""

from __future__ import annotations

import multiprocessing
import os
import traceback
from datetime import datetime
from typing import Iterator, Sequence

BATCH_LINES = 2_000
_END = b""
_ERROR = b"\x00"


CONNECTION_KEYS = ("NAME", "USER", "PASSWORD", "HOST", "PORT", "OPTIONS")


class RecordReader:
    """`replay_runs(...)` of markets over [start, end), computed in a child process."""

    def __init__(self, market_tickers: Sequence[str], start: datetime, end: datetime, *, types: Sequence[str]):
        from django.db import connection

        context = multiprocessing.get_context("spawn")
        self._receive, send = context.Pipe(duplex=False)
        self.process = context.Process(
            target=_read, name="kalshi-replay-reader", daemon=True,
            args=(send, list(market_tickers), start, end, list(types),
                  {key: connection.settings_dict.get(key) for key in CONNECTION_KEYS}),
        )
        self.process.start()
        send.close()  # the child's end: EOF here if it dies

    def runs(self) -> Iterator[list[str]]:
        """Batches of lines, in replay order; blocking (call from a worker thread)."""
        while True:
            try:
                payload = self._receive.recv_bytes()
            except EOFError:
                raise RuntimeError("the replay's record reader died") from None
            if payload == _END:
                return
            if payload.startswith(_ERROR):
                raise RuntimeError(f"the replay's record reader failed:\n{payload[1:].decode()}")
            yield payload.decode().split("\n")

    def close(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(5)
        self._receive.close()


def _read(send, tickers, start, end, types, database: dict) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kalshi_data.settings")
    try:
        import django

        django.setup()  # (done already if the parent's main module set Django up)
        from django.db import connections

        # The very database the server reads (a test's or a benchmark's too).
        connections["default"].close()
        connections["default"].settings_dict.update(database)
        from markets.replay_stream import replay_runs

        batch: list[str] = []
        for run in replay_runs(market_tickers=tickers, start_time=start, end_time=end, types=types):
            batch.extend(run)
            if len(batch) >= BATCH_LINES:
                send.send_bytes("\n".join(batch).encode())
                batch = []
        if batch:
            send.send_bytes("\n".join(batch).encode())
        send.send_bytes(_END)
    except BrokenPipeError:
        pass  # the server stopped
    except Exception:  # noqa: BLE001 - reported to the server, which stops with it
        send.send_bytes(_ERROR + traceback.format_exc().encode())
    finally:
        send.close()
