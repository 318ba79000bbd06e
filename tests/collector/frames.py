"""Kalshi frames as the exchange sends them, for feeding the pipeline in tests."""

import json

UUID = "9b0f6b43-5b68-4f9f-9f02-9a2d1b8ac1a1"


def dump(frame: dict) -> str:
    return json.dumps(frame)


def subscribed(cmd_id, channel, sid):
    return dump({"id": cmd_id, "type": "subscribed", "msg": {"channel": channel, "sid": sid}})


def snapshot(sid, seq, ticker, yes=None, no=None, cmd_id=None):
    msg = {"market_ticker": ticker, "market_id": UUID}
    if yes is not None:
        msg["yes_dollars_fp"] = yes
    if no is not None:
        msg["no_dollars_fp"] = no
    frame = {"type": "orderbook_snapshot", "sid": sid, "seq": seq, "msg": msg}
    if cmd_id is not None:
        frame["id"] = cmd_id
    return dump(frame)


def delta(sid, seq, ticker, side, price, size, ts_ms=None):
    msg = {"market_ticker": ticker, "market_id": UUID, "price_dollars": price,
           "delta_fp": size, "side": side}
    if ts_ms is not None:
        msg["ts_ms"] = ts_ms
    return dump({"type": "orderbook_delta", "sid": sid, "seq": seq, "msg": msg})


def trade(sid, seq, ticker, trade_id, yes_price, count, ts_ms, taker="yes"):
    from decimal import Decimal

    no_price = str(Decimal(1) - Decimal(yes_price))
    return dump({
        "type": "trade", "sid": sid, "seq": seq,
        "msg": {"trade_id": trade_id, "market_ticker": ticker, "yes_price_dollars": yes_price,
                "no_price_dollars": no_price, "count_fp": count, "taker_side": taker,
                "taker_outcome_side": taker, "taker_book_side": "bid" if taker == "yes" else "ask",
                "is_block_trade": False, "ts": ts_ms // 1000, "ts_ms": ts_ms},
    })


def lifecycle(sid, seq, ticker, event_type, **fields):
    return dump({"type": "market_lifecycle_v2", "sid": sid, "seq": seq,
                 "msg": {"market_ticker": ticker, "event_type": event_type, **fields}})


def ok(sid, seq, tickers, cmd_id=None):
    return dump({"id": cmd_id, "sid": sid, "seq": seq, "type": "ok",
                 "msg": {"market_tickers": tickers}})


def error(code, text, sid=None, seq=None, cmd_id=None):
    frame = {"type": "error", "msg": {"code": code, "msg": text}}
    for key, value in (("sid", sid), ("seq", seq), ("id", cmd_id)):
        if value is not None:
            frame[key] = value
    return dump(frame)
