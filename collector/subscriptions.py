"""Subscriptions as a managed resource: every command tracked until Kalshi answers.

One `Subscriptions` per WebSocket connection. Each command gets an id and a
future; the reader hands every control reply to `observe()`, which resolves
the future of that id (`subscribed`, `ok`, `error`), so the sender learns the
outcome, or a timeout after `command_timeout_seconds`. Commands are paced
(`command_rate_per_s`, a token bucket); an answer 27 ("too many commands")
waits and sends the command again.

Order books are spread over as many subscriptions as needed, each with at
most `cap` markets: the configured `max_markets_per_subscription`, lowered to
what Kalshi enforces when it answers 26 ("per-subscription market limit").
A 26 never repeats the same request: the batch is split in half and each
half is tried again (a new subscription when the sid is full). A ticker
counts as subscribed only once Kalshi confirmed it (`subscribed` for a new
sid, `ok` for `add_markets`). When Kalshi merges a new subscription into the
channel's open one and the connection is full, a 26 refuses the whole batch
at once (error 26 named as the reason): collector/connections.py then places
those markets on another connection. What cannot be subscribed (a single market
refused, any other error, a timeout) is returned to the caller, which records
a `subscribe_refused` hole and retries it later: one refused market never
takes others down with it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from dataclasses import dataclass

logger = logging.getLogger(__name__)

BOOK_CHANNEL = "orderbook_delta"
TOO_MANY_MARKETS = 26  # per-subscription market limit
TOO_FAST = 27  # command rate limit
UNKNOWN_SID = 7
PACE_RETRIES = 8  # a command refused with 27 this many times is given up
# A control reply has one of these types; a cheap test before parsing.
_CONTROL_MARKERS = ('"subscribed"', '"ok"', '"error"', '"unsubscribed"')
_CONTROL_MARKERS_BYTES = tuple(m.encode() for m in _CONTROL_MARKERS)


class CommandFailed(Exception):
    """Kalshi answered a command with an error (or never answered)."""

    def __init__(self, code: int | None, text: str, tickers=()):
        super().__init__(f"error {code}: {text}")
        self.code = code
        self.text = text
        self.tickers = list(tickers)  # the markets Kalshi named as refused, if any


@dataclass
class Reply:
    type: str
    sid: int | None
    msg: dict


class TokenBucket:
    """`rate` commands a second, bursts of `burst`; `take()` waits for a token."""

    def __init__(self, rate: float, burst: int):
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.at = time.monotonic()

    async def take(self) -> None:
        while True:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens >= 1:
                self.tokens -= 1
                return
            await asyncio.sleep((1 - self.tokens) / self.rate)


class Subscriptions:
    """One connection's commands and confirmed subscriptions. See the module docstring."""

    def __init__(self, send, config, pipeline=None):
        self._send_raw = send  # async callable(str)
        self.config = config
        self.pipeline = pipeline  # told what each subscribe asks for (expect_subscription)
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future] = {}
        self._bucket = TokenBucket(config.command_rate_per_s, max(1, int(config.command_rate_per_s * 2)))
        self._book_lock = asyncio.Lock()
        self.cap = config.max_markets_per_subscription
        self.book_sids: dict[int, set[str]] = {}  # confirmed tickers by sid
        self._ended: set[int] = set()  # sids Kalshi ended (a late confirmation must not revive one)
        self.channel_of_sid: dict[int, str] = {}
        self.commands_sent = 0
        self.refusals = 0

    # -- the reader's side -------------------------------------------------------

    def observe(self, raw: str | bytes) -> None:
        """Resolve the command a control reply answers; other frames pass untouched."""
        markers = _CONTROL_MARKERS_BYTES if isinstance(raw, bytes) else _CONTROL_MARKERS
        if not any(marker in raw for marker in markers):
            return
        try:
            frame = json.loads(raw)
        except ValueError:
            return  # the pipeline logs and counts malformed frames
        if not isinstance(frame, dict):
            return
        kind, msg, command_id = frame.get("type"), frame.get("msg"), frame.get("id")
        msg = msg if isinstance(msg, dict) else {}
        sid = msg.get("sid") if kind == "subscribed" else frame.get("sid")
        if kind == "subscribed" and isinstance(sid, int):
            self.channel_of_sid[sid] = msg.get("channel")
        elif kind == "unsubscribed" or (kind == "error" and msg.get("code") in (10, 25)):
            # Kalshi ended the sid: its markets are no longer subscribed.
            self.book_sids.pop(sid, None)
            self.channel_of_sid.pop(sid, None)
            self._ended.add(sid)
        future = self._waiting.pop(command_id, None) if isinstance(command_id, int) else None
        if future is None or future.done():
            return
        if kind == "error":
            named = msg.get("market_tickers")
            future.set_exception(CommandFailed(msg.get("code"), str(msg.get("msg", "")),
                                               named if isinstance(named, list) else ()))
        else:
            future.set_result(Reply(kind, sid if isinstance(sid, int) else None, msg))

    def close(self) -> None:
        """The connection is gone: every command waiting fails."""
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(CommandFailed(None, "connection closed"))
        self._waiting.clear()

    # -- commands ----------------------------------------------------------------

    async def send(self, command: str, params: dict | None = None, *, channels=(), tickers=()) -> int:
        """Send one command (paced) without waiting for its reply; returns its id."""
        await self._bucket.take()
        command_id = next(self._ids)
        if self.pipeline is not None:
            for channel in channels:
                self.pipeline.expect_subscription(command_id, channel, list(tickers))
        frame = {"id": command_id, "cmd": command}
        if params is not None:
            frame["params"] = params
        await self._send_raw(json.dumps(frame))
        self.commands_sent += 1
        return command_id

    async def call(self, command: str, params: dict | None = None, *, channels=(), tickers=()) -> Reply:
        """Send a command and wait for its reply; 27 waits and sends it again."""
        for attempt in range(PACE_RETRIES):
            loop = asyncio.get_running_loop()
            future = loop.create_future()
            # Nobody may be left to read its failure (the connection closed).
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
            # Registered before sending: the reply can come before we wait.
            command_id = next(self._ids)
            self._waiting[command_id] = future
            try:
                await self._bucket.take()
                if self.pipeline is not None:
                    for channel in channels:
                        self.pipeline.expect_subscription(command_id, channel, list(tickers))
                frame = {"id": command_id, "cmd": command}
                if params is not None:
                    frame["params"] = params
                await self._send_raw(json.dumps(frame))
                self.commands_sent += 1
                return await asyncio.wait_for(future, self.config.command_timeout_seconds)
            except TimeoutError:
                raise CommandFailed(None, f"no reply to {command} in {self.config.command_timeout_seconds}s")
            except CommandFailed as exc:
                if exc.code != TOO_FAST:
                    raise
                self.refusals += 1
                delay = (2 ** attempt) / self.config.command_rate_per_s
                logger.warning("ws command %s paced by Kalshi (27); again in %.2fs", command, delay)
                await asyncio.sleep(delay)
            finally:
                self._waiting.pop(command_id, None)
        raise CommandFailed(TOO_FAST, f"{command} refused {PACE_RETRIES} times for pace")

    # -- order books ----------------------------------------------------------------

    def book_sid_of(self, ticker: str) -> int | None:
        for sid, tickers in self.book_sids.items():
            if ticker in tickers:
                return sid
        return None

    def subscribed_books(self) -> set[str]:
        return set().union(*self.book_sids.values()) if self.book_sids else set()

    async def subscribe_books(self, tickers, use_yes_price: bool) -> dict[str, str]:
        """Subscribe `tickers`' books; return {ticker: why} for those refused."""
        async with self._book_lock:
            have = self.subscribed_books()
            todo = [t for t in dict.fromkeys(tickers) if t not in have]
            refused: dict[str, str] = {}
            while todo:
                sid = self._sid_with_room()
                room = self.cap - len(self.book_sids[sid]) if sid is not None else self.cap
                chunk, todo = todo[:room], todo[room:]
                await self._place(chunk, sid, use_yes_price, refused)
            return refused

    def _sid_with_room(self, n: int = 1) -> int | None:
        """A confirmed book sid that can take `n` more markets under the cap."""
        for sid, tickers in self.book_sids.items():
            if len(tickers) + n <= self.cap:
                return sid
        return None

    async def _place(self, chunk: list[str], sid: int | None, use_yes_price: bool, refused: dict) -> None:
        """Put `chunk` on `sid` (add_markets) or on a new subscription; split on 26."""
        failure: CommandFailed
        try:
            if sid is None:
                reply = await self.call(
                    "subscribe",
                    {"channels": [BOOK_CHANNEL], "market_tickers": chunk, "use_yes_price": use_yes_price},
                    channels=(BOOK_CHANNEL,), tickers=chunk,
                )
                if reply.sid is not None and reply.sid not in self._ended:
                    self.book_sids.setdefault(reply.sid, set()).update(chunk)
            else:
                await self.call(
                    "update_subscription",
                    {"sid": sid, "market_tickers": chunk, "action": "add_markets"},
                )
                if sid in self.book_sids:
                    self.book_sids[sid].update(chunk)
            return
        except CommandFailed as exc:
            failure = exc
        if failure.code == UNKNOWN_SID and sid is not None:
            # Kalshi ended that sid meanwhile: the markets go elsewhere.
            self.book_sids.pop(sid, None)
            self._ended.add(sid)
            await self._place(chunk, self._sid_with_room(len(chunk)), use_yes_price, refused)
            return
        if failure.code == TOO_MANY_MARKETS:
            total = len(self.subscribed_books())
            # A new subscription may be merged into the channel's open one
            # (Kalshi's docs leave it open; the simulator merges): then it is
            # the connection's whole count that Kalshi holds against the cap.
            held = len(self.book_sids.get(sid, ())) if sid is not None else total
            bound = held + len(chunk) - 1  # Kalshi holds fewer than held + len(chunk)
            if 1 <= bound < self.cap:
                logger.warning("ws Kalshi caps a subscription below %d markets (26); cap now %d",
                               bound + 1, bound)
                self.cap = bound
            # A full connection refuses the batch whole: splitting would only
            # be refused again, market by market. The caller places it elsewhere.
            full = sid is None and 0 < total >= self.cap and self._sid_with_room(1) is None
            if not full and (len(chunk) > 1 or sid is not None):
                parts = [chunk[: len(chunk) // 2], chunk[len(chunk) // 2 :]] if len(chunk) > 1 else [chunk]
                for part in parts:
                    await self._place(part, self._sid_with_room(len(part)), use_yes_price, refused)
                return
        named = [t for t in failure.tickers if t in chunk]
        if named and len(named) < len(chunk):
            # Kalshi named the markets it refused; the others go again.
            rest = [t for t in chunk if t not in named]
            chunk = named
            await self._place(rest, sid if sid in self.book_sids else None, use_yes_price, refused)
        elif len(chunk) > 1 and failure.code is not None and failure.code != TOO_MANY_MARKETS:
            # One bad market must not take the others down: try halves.
            half = len(chunk) // 2
            for part in (chunk[:half], chunk[half:]):
                await self._place(part, sid if sid in self.book_sids else None, use_yes_price, refused)
            return
        why = f"error {failure.code}: {failure.text}" if failure.code is not None else failure.text
        logger.warning("ws subscribe refused markets=%s why=%s", ",".join(chunk[:5]), why)
        for ticker in chunk:
            refused[ticker] = why

    async def unsubscribe_books(self, tickers) -> None:
        """Stop the books of `tickers` (settled markets) with `delete_markets`."""
        by_sid: dict[int, list[str]] = {}
        for ticker in tickers:
            sid = self.book_sid_of(ticker)
            if sid is not None:
                by_sid.setdefault(sid, []).append(ticker)
        for sid, chunk in by_sid.items():
            self.book_sids[sid].difference_update(chunk)
            await self.send("update_subscription", {
                "sids": [sid], "market_tickers": chunk, "action": "delete_markets",
            })

    async def request_snapshots(self, sid: int, tickers: list[str], batch: int) -> None:
        if sid not in self.book_sids:
            # Kalshi ended that sid: the resubscribe brings fresh snapshots.
            return
        for start in range(0, len(tickers), batch):
            await self.send("update_subscription", {
                "sid": sid, "market_tickers": tickers[start : start + batch], "action": "get_snapshot",
            })
