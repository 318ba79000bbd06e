"""One WebSocket connection's protocol state, Sans-I/O: commands in, frames out.

A `Session` owns the connection's subscriptions and their sequence numbers
(PROTOCOL.md sections 3 and 5): sids count from 1 per connection, one sid
per channel; every sequenced message of a sid takes the next `seq` from 1,
shared by all the sid's tickers, snapshots and `ok`/`unsubscribed`/error
replies included. It turns client commands and exchange events into frame
dicts; server.py sends them (through faults.py) and never looks inside.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

import orjson

from kalshi import wire

from .events import (
    BookDelta, BookRecovered, ChannelHole, EventCreated, EventFeeUpdate, MarketCreated, MarketLifecycle,
    RecordedLifecycle, TradeExecuted,
)
from .exchange import Exchange
from .ratelimit import TokenBucket

CHANNELS = (
    "orderbook_delta",
    "ticker",
    "trade",
    "fill",
    "market_positions",
    "market_lifecycle_v2",
    "multivariate_market_lifecycle",
    "communications",
    "order_group_updates",
    "user_orders",
    "cfbenchmarks_value",
    "cfbenchmarks_value_5hz",
    "pyth_value",
)
SEQUENCED = {"orderbook_delta", "trade", "market_lifecycle_v2", "multivariate_market_lifecycle"}
# Channels whose ticker set update_subscription add/delete may change.
TICKER_UPDATABLE = {"orderbook_delta", "ticker", "fill", "user_orders"}
ACTIONS = ("add_markets", "delete_markets", "get_snapshot")

# Kalshi's error codes and texts (asyncapi errorResponse).
ERRORS = {
    1: "Unable to process message",
    2: "Params required",
    3: "Channels required",
    4: "Subscription IDs required",
    5: "Unknown command",
    7: "Unknown subscription ID",
    8: "Unknown channel name",
    10: "Channel error",
    11: "Invalid parameter",
    12: "Exactly one subscription ID is required",
    13: "Unsupported action",
    14: "Market Ticker required",
    15: "Action required",
    18: "Command timeout",
    25: "Subscription buffer overflow",
    26: "Subscription market limit exceeded",
    27: "Too many requests",
}
LIFECYCLE_KINDS = {"market_lifecycle_v2", "event_lifecycle", "multivariate_market_lifecycle", "event_fee_update"}


@dataclass
class Subscription:
    sid: int
    channel: str
    tickers: set[str] | None  # None: every market (trade, ticker and lifecycle without a filter)
    use_yes_price: bool = False
    skip_ticker_ack: bool = False
    seq: int = 0  # the last number given out

    def wants(self, ticker: str) -> bool:
        return self.tickers is None or ticker in self.tickers


@dataclass
class Frame:
    """One outgoing message: the body, and what faults may need to know about it."""

    body: dict
    sid: int | None = None
    seq: int | None = None
    data: bool = False  # a channel message (not a reply to a command)

    def text(self) -> str:
        # Compact JSON, as Kalshi sends it; orjson is about 8x faster than json here.
        return orjson.dumps(self.body).decode()


@dataclass
class Session:
    exchange: Exchange
    fmt: str = wire.CURRENT
    subscriptions: dict[int, Subscription] = field(default_factory=dict)
    next_sid: int = 1
    # Hostility (SimulatorConfig fields of the same meaning; server.py sets them).
    market_cap: int | None = None  # markets per sid, beyond which error 26
    command_bucket: TokenBucket | None = None  # commands beyond it: error 27
    reply_seq: str = "consume"  # consume | peek | none (mixed is resolved per connection)
    lifecycle_seq: bool = True
    add_markets_refuse_rate: float = 0.0  # error 18
    rng: random.Random = field(default_factory=random.Random)

    # -- commands ---------------------------------------------------------------

    def handle_command(self, raw: str | bytes) -> list[Frame]:
        try:
            command = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return [_error(1, None)]
        if not isinstance(command, dict):
            return [_error(1, None)]
        cid = command.get("id")
        cid = cid if isinstance(cid, int) and not isinstance(cid, bool) and cid > 0 else None
        if self.command_bucket is not None and not self.command_bucket.take():
            return [_error(27, cid)]  # paced: the command is not carried out
        handler = {
            "subscribe": self._subscribe,
            "unsubscribe": self._unsubscribe,
            "list_subscriptions": self._list,
            "update_subscription": self._update,
        }.get(command.get("cmd"))
        if handler is None:
            return [_error(5, cid)]
        params = command.get("params")
        if command.get("cmd") != "list_subscriptions" and not isinstance(params, dict):
            return [_error(2, cid)]
        return handler(cid, params or {})

    def _subscribe(self, cid, params) -> list[Frame]:
        channels = params.get("channels")
        if not isinstance(channels, list) or not channels:
            return [_error(3, cid)]
        if any(c not in CHANNELS for c in channels):
            return [_error(8, cid)]
        tickers, problem = _tickers(params)
        if problem:
            return [_error(problem, cid)]
        if "orderbook_delta" in channels and not tickers:
            return [_error(14, cid)]
        out: list[Frame] = []
        unknown = [t for t in tickers or () if t not in self.exchange.markets]
        if unknown:
            out.append(_error(11, cid, market_tickers=unknown))
            tickers = [t for t in tickers if t in self.exchange.markets]
            if not tickers:  # nothing left to subscribe (and never "all markets")
                return out
        if tickers and self.market_cap is not None:
            # The cap is per sid, on the merged set; nothing of the command is done.
            for channel in channels:
                existing = next((s for s in self.subscriptions.values() if s.channel == channel), None)
                merged = set(tickers) | (existing.tickers or set() if existing else set())
                if channel not in ("market_lifecycle_v2", "multivariate_market_lifecycle") and len(
                    merged
                ) > self.market_cap:
                    return out + [_error(26, cid)]
        for channel in channels:
            existing = next((s for s in self.subscriptions.values() if s.channel == channel), None)
            global_channel = channel in ("market_lifecycle_v2", "multivariate_market_lifecycle")
            wanted = None if global_channel or not tickers else set(tickers)
            if existing is not None:
                # Resubscribing an open channel merges the tickers (error 6 is retired).
                added = (
                    [] if existing.tickers is None or wanted is None else sorted(wanted - existing.tickers)
                )
                if wanted is None:
                    existing.tickers = None
                elif existing.tickers is not None:
                    existing.tickers |= wanted
                out.append(
                    Frame({"id": cid, "type": "subscribed", "msg": {"channel": channel, "sid": existing.sid}})
                )
                if channel == "orderbook_delta":
                    out += self._snapshots(existing, added)
                continue
            sub = Subscription(
                sid=self.next_sid,
                channel=channel,
                tickers=wanted,
                use_yes_price=bool(params.get("use_yes_price", False)),
                skip_ticker_ack=bool(params.get("skip_ticker_ack", False)),
            )
            self.next_sid += 1
            self.subscriptions[sub.sid] = sub
            out.append(
                Frame(
                    _without_none(
                        {"id": cid, "type": "subscribed", "msg": {"channel": channel, "sid": sub.sid}}
                    )
                )
            )
            if channel == "orderbook_delta":
                out += self._snapshots(sub, tickers)
            elif channel == "ticker" and params.get("send_initial_snapshot"):
                out += [self._ticker(sub, t, self.exchange.markets[t].updated_ms) for t in tickers or ()]
        return [Frame(_without_none(f.body), f.sid, f.seq, f.data) for f in out]

    def _unsubscribe(self, cid, params) -> list[Frame]:
        sids = params.get("sids")
        if not isinstance(sids, list) or not sids:
            return [_error(4, cid)]
        out = []
        for sid in sids:
            sub = self.subscriptions.pop(sid, None) if isinstance(sid, int) else None
            if sub is None:
                out.append(_error(7, cid))
                continue
            seq = self._reply_seq(sub)
            out.append(
                Frame(_without_none({"id": cid, "sid": sid, "seq": seq, "type": "unsubscribed"}), sid, seq)
            )
        return out

    def _list(self, cid, params) -> list[Frame]:
        listing = [{"channel": s.channel, "sid": s.sid} for s in self.subscriptions.values()]
        return [Frame(_without_none({"id": cid, "type": "ok", "msg": listing}))]

    def _update(self, cid, params) -> list[Frame]:
        sid, sids = params.get("sid"), params.get("sids")
        if (sid is None) == (sids is None):
            return [_error(12, cid)]
        if sids is not None:
            if not isinstance(sids, list) or len(sids) != 1:
                return [_error(12, cid)]
            sid = sids[0]
        action = params.get("action")
        if action is None:
            return [_error(15, cid)]
        if action not in ACTIONS:
            return [_error(13, cid)]
        sub = self.subscriptions.get(sid) if isinstance(sid, int) else None
        if sub is None:
            return [_error(7, cid)]
        allowed = (
            sub.channel == "orderbook_delta" if action == "get_snapshot" else sub.channel in TICKER_UPDATABLE
        )
        if not allowed:
            return [_error(13, cid)]
        tickers, problem = _tickers(params)
        if problem or not tickers:
            return [_error(problem or 14, cid)]
        current = sub.tickers if sub.tickers is not None else set()
        # Tickers that cannot be served get one error 11 naming them; the
        # rest of the command is still carried out (as for subscribe).
        if action == "get_snapshot":
            refused = [t for t in tickers if t not in current]
        else:
            refused = [t for t in tickers if t not in self.exchange.markets]
        out = [_error(11, cid, market_tickers=refused)] if refused else []
        tickers = [t for t in tickers if t not in refused]
        if not tickers:
            return out
        if action == "get_snapshot":
            return out + self._snapshots(sub, tickers, cid=cid)
        if action == "add_markets":
            if self.market_cap is not None and len(current | set(tickers)) > self.market_cap:
                return out + [self._sid_error(sub, 26, cid)]
            if self.add_markets_refuse_rate and self.rng.random() < self.add_markets_refuse_rate:
                return out + [self._sid_error(sub, 18, cid)]
            added = [t for t in tickers if t not in current]
            sub.tickers = current | set(tickers)
        else:
            added = []
            sub.tickers = current - set(tickers)
        out.append(self._ok(sub, cid))
        if sub.channel == "orderbook_delta":
            out += self._snapshots(sub, added)
        return out

    def _ok(self, sub: Subscription, cid) -> Frame:
        seq = self._reply_seq(sub)
        msg = {} if sub.skip_ticker_ack else {"market_tickers": sorted(sub.tickers or ())}
        return Frame(
            _without_none({"id": cid, "sid": sub.sid, "seq": seq, "type": "ok", "msg": msg}), sub.sid, seq
        )

    def _sid_error(self, sub: Subscription, code: int, cid) -> Frame:
        """A refusal of a command on an open sid (26, 18): the sid stays as it was."""
        seq = self._reply_seq(sub)
        body = {"id": cid, "sid": sub.sid, "seq": seq, "type": "error", "msg": {"code": code, "msg": ERRORS[code]}}
        return Frame(_without_none(body), sub.sid, seq)

    def _reply_seq(self, sub: Subscription) -> int | None:
        """The seq a reply on this sid carries: consumed, peeked (the next data
        frame carries the same number) or none (PROTOCOL.md section 10)."""
        if self.reply_seq == "none":
            return None
        if self.reply_seq == "peek":
            return sub.seq + 1
        sub.seq += 1
        return sub.seq

    def subscribes_any(self, tickers) -> bool:
        """True if an order-book subscription of this session covers any of `tickers`."""
        return any(
            sub.channel == "orderbook_delta" and sub.tickers is not None and not sub.tickers.isdisjoint(tickers)
            for sub in self.subscriptions.values()
        )

    # -- exchange events ----------------------------------------------------------

    def on_events(self, events) -> list[Frame]:
        out: list[Frame] = []
        subs = list(self.subscriptions.values())
        # Book changes are nearly every event: they go straight to the book
        # subscriptions (a third of a replayed frame's cost went to asking
        # every subscription about every event).
        book_subs = [s for s in subs if s.channel == "orderbook_delta"]
        other_subs = [s for s in subs if s.channel != "orderbook_delta"]
        markets, fmt = self.exchange.markets, self.fmt
        for event in events:
            if type(event) is BookDelta:
                for sub in book_subs:
                    if sub.tickers is None or event.market_ticker in sub.tickers:
                        msg = wire.delta_msg(markets[event.market_ticker], event,
                                             use_yes_price=sub.use_yes_price, fmt=fmt)
                        out.append(self._data(sub, "orderbook_delta", msg))
                for sub in other_subs:
                    out += self._frames_for(sub, event)
                continue
            for sub in subs:
                out += self._frames_for(sub, event)
        return out

    def _frames_for(self, sub: Subscription, event) -> list[Frame]:
        channel, fmt = sub.channel, self.fmt
        if isinstance(event, BookDelta):  # (book subscriptions get theirs in on_events)
            if channel == "ticker" and sub.wants(event.market_ticker):
                return [self._ticker(sub, event.market_ticker, event.ts_ms)]
        elif isinstance(event, TradeExecuted):
            ticker = event.trade.market_ticker
            if channel == "trade" and sub.wants(ticker):
                return [self._data(sub, "trade", wire.trade_msg(event.trade, fmt=fmt))]
        elif isinstance(event, BookRecovered):
            if channel == "orderbook_delta" and sub.wants(event.market_ticker):
                return [self._snapshot(sub, event.market_ticker, book=event.book)]
        elif isinstance(event, ChannelHole):
            if channel == event.channel:
                sub.seq += 1  # the lost message's number: the next one reveals the gap
        elif isinstance(event, RecordedLifecycle):
            if channel not in ("market_lifecycle_v2", "multivariate_market_lifecycle"):
                return []
            if event.kind == "market_lifecycle_v2":
                if self._combo_channel(event.market_ticker) == channel:
                    return [self._data(sub, channel, event.msg)]
            elif channel == "market_lifecycle_v2":
                return [self._data(sub, event.kind, event.msg)]
        elif channel in ("market_lifecycle_v2", "multivariate_market_lifecycle"):
            # Combo markets' lifecycle goes on its own channel (same payload).
            if isinstance(event, MarketCreated):
                if self._combo_channel(event.market.ticker) == channel:
                    return [self._data(sub, channel, wire.created_msg(event.market))]
                return []
            if isinstance(event, MarketLifecycle):
                if self._combo_channel(event.market_ticker) == channel:
                    return [self._data(sub, channel, wire.lifecycle_msg(event))]
                return []
            if channel != "market_lifecycle_v2":
                return []
            if isinstance(event, EventCreated):
                return [self._data(sub, "event_lifecycle", wire.event_lifecycle_msg(event.event))]
            if isinstance(event, EventFeeUpdate):
                return [self._data(sub, "event_fee_update", wire.fee_update_msg(event))]
        return []

    def end(self, sid: int, code: int) -> list[Frame]:
        """End a subscription with a terminal channel error (10 or 25)."""
        sub = self.subscriptions.pop(sid, None)
        if sub is None:
            return []
        sub.seq += 1
        body = {"type": "error", "sid": sid, "seq": sub.seq, "msg": {"code": code, "msg": ERRORS[code]}}
        return [Frame(body, sid, sub.seq)]

    def _combo_channel(self, ticker: str) -> str:
        market = self.exchange.markets.get(ticker)
        return "multivariate_market_lifecycle" if market is not None and market.is_combo else "market_lifecycle_v2"

    # -- frames ---------------------------------------------------------------------

    def _data(self, sub: Subscription, kind: str, msg: dict) -> Frame:
        if kind in LIFECYCLE_KINDS and not self.lifecycle_seq:
            return Frame({"type": kind, "sid": sub.sid, "msg": msg}, sub.sid, None, data=True)
        sub.seq += 1
        return Frame({"type": kind, "sid": sub.sid, "seq": sub.seq, "msg": msg}, sub.sid, sub.seq, data=True)

    def _snapshots(self, sub: Subscription, tickers, *, cid: int | None = None) -> list[Frame]:
        """Snapshots of the tickers whose book is known now. A replayed market
        inside a recorded hole has none: it gets its snapshot when the record
        has the book again (BookRecovered), never a made-up one."""
        known = getattr(self.exchange, "book_known", None)
        return [self._snapshot(sub, t, cid=cid) for t in tickers if known is None or known(t)]

    def _snapshot(self, sub: Subscription, ticker: str, *, cid: int | None = None, book=None) -> Frame:
        sub.seq += 1
        market = self.exchange.markets[ticker]
        msg = wire.snapshot_msg(
            market, book if book is not None else self.exchange.book(ticker),
            use_yes_price=sub.use_yes_price, fmt=self.fmt,
        )
        body = {"type": "orderbook_snapshot", "sid": sub.sid, "seq": sub.seq, "msg": msg}
        if cid is not None:
            body["id"] = cid
        return Frame(body, sub.sid, sub.seq, data=True)

    def _ticker(self, sub: Subscription, ticker: str, ts_ms: int) -> Frame:
        market = self.exchange.markets[ticker]
        msg = wire.ticker_msg(market, self.exchange.book(ticker), ts_ms, fmt=self.fmt)
        return Frame({"type": "ticker", "sid": sub.sid, "msg": msg}, sub.sid, None, data=True)


def _tickers(params) -> tuple[list[str] | None, int | None]:
    """The command's market tickers, or an error code when they are malformed."""
    one, many = params.get("market_ticker"), params.get("market_tickers")
    if one is not None and many is not None:
        return None, 11
    if one is not None:
        return ([one], None) if isinstance(one, str) and one else (None, 11)
    if many is not None:
        if not isinstance(many, list) or not all(isinstance(t, str) and t for t in many):
            return None, 11
        return list(dict.fromkeys(many)), None
    return None, None


def _error(code: int, cid, **extra) -> Frame:
    """A command's error reply (not tied to a sid, so it takes no seq)."""
    msg = {"code": code, "msg": ERRORS[code], **extra}
    return Frame(_without_none({"id": cid, "type": "error", "msg": msg}))


def _without_none(body: dict) -> dict:
    return {k: v for k, v in body.items() if v is not None}
