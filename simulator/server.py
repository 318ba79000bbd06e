"""The network side: REST and the WebSocket on one aiohttp host:port.

Every request passes `auth_middleware` (Kalshi signature check, then the
token bucket). A WebSocket connection is a `Connection`: its Session
(session.py) makes frames, its FaultInjector (faults.py) decides what is
actually sent, and one writer task drains its outbound queue, so a client
that reads slowly makes the queue grow until the slow-consumer rule ends
the subscription with error 25, as Kalshi does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import struct
import time
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web

from .config import REST_PREFIX, WS_PATH
from .events import BookHole
from .faults import FaultInjector
from .ratelimit import TokenBucket
from .rest import RestApi, error_response
from .session import Frame, Session
from .signatures import has_signature_headers, signature_problem

if TYPE_CHECKING:
    from .simulator import Simulator

logger = logging.getLogger(__name__)

_CLOSE = object()  # queue sentinel: close the connection after what is queued
WRITE_BATCH = 500  # frames written to the socket at once, at most


def _text_frame(payload: bytes) -> bytes:
    """A final, unmasked text frame (RFC 6455 5.2): what a server sends."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 65536:
        return struct.pack("!BBH", 0x81, 126, size) + payload
    return struct.pack("!BBQ", 0x81, 127, size) + payload


class Connection:
    """One client WebSocket: session state, faults, outbound queue."""

    def __init__(self, sim: "Simulator", ws: web.WebSocketResponse, number: int):
        self.sim = sim
        self.ws = ws
        self.number = number
        self.session = new_session(sim, number)
        self.faults = FaultInjector(sim.config.faults, seed=sim.config.seed, connection=number)
        self.queue: asyncio.Queue = asyncio.Queue()
        self.frames_sent = 0  # frames queued so far (what disconnect_every_frames counts)
        self.unsent = 0  # frames queued and not yet written to the socket
        self.closing = False
        self.last_command_at = 0.0  # time.monotonic() of the last command (the replay waits for quiet)

    # Called synchronously by the simulator right after each exchange step.
    def deliver_events(self, events) -> None:
        if self.closing:
            return
        holes = [i for i, e in enumerate(events) if isinstance(e, BookHole)]
        if not holes:
            self.send(self.session.on_events(events))
            return
        # A replayed hole (simulator/recorded.py): what came before it is sent,
        # then a connection that records any of its books is closed.
        done = 0
        for i in holes:
            self.send(self.session.on_events(events[done:i]))
            done = i + 1
            if self.session.subscribes_any(events[i].market_tickers):
                self.close()
                return
        self.send(self.session.on_events(events[done:]))

    def command(self, raw) -> None:
        self.last_command_at = time.monotonic()
        if not self.closing:
            self.send(self.session.handle_command(raw))

    def send(self, frames: list[Frame]) -> None:
        limit = self.sim.config.outbound_queue_limit
        faultless = self.faults.config.none()  # (a replay's connections): no decision to make
        for frame in frames:
            if self.closing:
                return
            if frame.data and frame.sid not in self.session.subscriptions:
                continue  # its subscription ended earlier in this batch (error 10/25)
            if frame.data and self.queue.qsize() >= limit:
                # Slow consumer: Kalshi ends the subscription with error 25.
                self._put_all(self.session.end(frame.sid, 25))
                continue
            if faultless and not self.faults.held:
                self._put(frame.text())
                continue
            decision = self.faults.decide(frame)
            if decision.terminal_sid is not None:
                self._put_all(
                    self.session.end(decision.terminal_sid, self.sim.config.faults.terminal_error_code)
                )
                continue
            for text in decision.texts:
                self._put(text)

    def _put_all(self, frames: list[Frame]) -> None:
        for frame in frames:
            self._put(frame.text())

    def _put(self, text: str) -> None:
        self.queue.put_nowait(text)
        self.unsent += 1
        every = self.sim.config.faults.disconnect_every_frames
        self.frames_sent += 1
        if every and self.frames_sent % every == 0:
            self.close()

    def close(self) -> None:
        """Close after the frames already queued (a server-side disconnect)."""
        if not self.closing:
            self.closing = True
            self.queue.put_nowait(_CLOSE)

    async def writer(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while batch[-1] is not _CLOSE and len(batch) < WRITE_BATCH and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            close = batch[-1] is _CLOSE
            texts = batch[:-1] if close else batch
            if texts:
                await self._write(texts)
                self.unsent -= len(texts)
            if close:
                await self.ws.close(code=1001, message=b"going away")
                return

    async def _write(self, texts: list[str]) -> None:
        """Send text frames, several in one write to the socket when we can.

        aiohttp writes each frame to the socket on its own: a system call per
        frame, about 40% of what a replayed frame cost (bench/replay_bench.py).
        Without compression a server's text frame is a 2-10 byte header and
        the payload (RFC 6455 section 5.2), so a batch is framed here and
        written at once, with aiohttp's own flow control (its protocol's
        drain, a private part of the pinned aiohttp). With permessage-deflate
        negotiated, or one frame, aiohttp sends them."""
        writer = getattr(self.ws, "_writer", None)
        if len(texts) == 1 or self.ws.compress or writer is None:
            for text in texts:
                await self.ws.send_str(text)
            return
        transport = writer.transport
        if transport.is_closing():
            raise ConnectionResetError("Cannot write to closing transport")
        transport.write(b"".join(_text_frame(text.encode()) for text in texts))
        protocol = writer.protocol
        if protocol._paused:
            await protocol._drain_helper()

    @property
    def pending(self) -> bool:
        """Frames still to write on a socket that is still open."""
        return self.unsent > 0 and not self.ws.closed

    async def heartbeat(self) -> None:
        """Ping with payload `heartbeat` every heartbeat_seconds, like Kalshi."""
        while not self.ws.closed:
            await asyncio.sleep(self.sim.config.heartbeat_seconds)
            if not self.sim.config.faults.silent_pings and not self.ws.closed:
                await self.ws.ping(b"heartbeat")

    async def disconnect_timer(self) -> None:
        seconds = self.sim.config.faults.disconnect_every_seconds
        if seconds:
            await asyncio.sleep(seconds)
            self.close()


def new_session(sim: "Simulator", number: int) -> Session:
    """A connection's Session with the simulator's hostility settings.

    "mixed" reply seq is drawn per connection from the seed, so a run with
    several connections sees both conventions (PROTOCOL.md section 10)."""
    config = sim.config
    rng = random.Random(f"{config.seed}:session:{number}")
    reply_seq = config.reply_seq
    if reply_seq == "mixed":
        reply_seq = rng.choice(("consume", "peek"))
    bucket = (
        TokenBucket(config.command_rate_per_s, config.command_burst) if config.command_rate_per_s else None
    )
    return Session(
        sim.exchange,
        config.wire_format,
        market_cap=config.market_cap_per_subscription,
        command_bucket=bucket,
        reply_seq=reply_seq,
        lifecycle_seq=config.lifecycle_seq,
        add_markets_refuse_rate=config.add_markets_refuse_rate,
        rng=rng,
    )


def _is_add_markets(raw) -> bool:
    try:
        command = json.loads(raw)
        return command.get("cmd") == "update_subscription" and command["params"].get("action") == "add_markets"
    except (ValueError, TypeError, AttributeError, KeyError, UnicodeDecodeError):
        return False


def build_app(sim: "Simulator") -> web.Application:
    app = web.Application(middlewares=[_auth_middleware(sim)])
    app.router.add_get(WS_PATH, _ws_handler(sim))
    app.router.add_routes(RestApi(sim).routes())
    return app


def _auth_middleware(sim: "Simulator"):
    @web.middleware
    async def middleware(request: web.Request, handler):
        config = sim.config
        is_ws = request.path == WS_PATH
        if sim.in_outage():
            # Maintenance: handshakes and REST refused, the exchange keeps running.
            sim.stats["outage_refused"] += 1
            return error_response(503, "service_unavailable", "exchange under maintenance")
        if is_ws and sim.auth_refused():
            sim.stats["unauthorized"] += 1
            return error_response(401, "unauthorized", "authentication failed", "refused for a while")
        signed = has_signature_headers(request.headers)
        if config.require_signatures and (is_ws or signed or not config.public_rest_unsigned):
            problem = signature_problem(
                request.headers,
                request.method,
                request.path,
                sim.accepted_keys,
                max_skew_s=config.max_clock_skew_s,
            )
            if problem:
                sim.stats["unauthorized"] += 1
                return error_response(401, "unauthorized", "authentication failed", problem)
        if not is_ws and request.path.startswith(REST_PREFIX):
            client = request.headers.get("KALSHI-ACCESS-KEY") or request.remote or "?"
            if not sim.rate_limiter.allow(client):
                sim.stats["rate_limited"] += 1
                return web.json_response({"error": "too many requests"}, status=429)
            sim.stats["rest_requests"] += 1
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return error_response(404, "not_found", "not found")
        except web.HTTPMethodNotAllowed:
            return error_response(405, "method_not_allowed", "method not allowed")

    return middleware


def _ws_handler(sim: "Simulator"):
    async def handler(request: web.Request) -> web.WebSocketResponse:
        # Pings are ours (heartbeat, with Kalshi's payload); pongs to a
        # client's pings are automatic.
        ws = web.WebSocketResponse(autoping=True, heartbeat=None, max_msg_size=4 * 1024 * 1024,
                                   compress=sim.config.ws_compression)
        await ws.prepare(request)
        connection = sim._open_connection(ws)
        tasks = [
            asyncio.create_task(connection.writer()),
            asyncio.create_task(connection.heartbeat()),
            asyncio.create_task(connection.disconnect_timer()),
        ]
        try:
            async for message in ws:
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY) and not connection.closing:
                    delay = sim.config.add_markets_delay_s
                    if delay and _is_add_markets(message.data):
                        # Answered late: the reply and snapshots come after
                        # whatever the sid sends meanwhile.
                        asyncio.get_running_loop().call_later(delay, connection.command, message.data)
                    else:
                        connection.command(message.data)
                elif message.type == WSMsgType.ERROR:
                    break
        finally:
            sim._close_connection(connection)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if not ws.closed:
                await ws.close()
        return ws

    return handler
