"""The offline stream is the server's stream without a network."""

import json

from simulator import FaultConfig
from simulator.offline import offline_stream
from markets.book import OrderBook
from markets.fixedpoint import parse_count, parse_price


def test_offline_stream_replays_to_the_true_books():
    stream = offline_stream(seed=3, markets=10, steps=2000)
    books = {}
    for text in stream.frames:
        frame = json.loads(text)
        msg = frame.get("msg")
        if frame["type"] == "orderbook_snapshot":
            books[msg["market_ticker"]] = OrderBook.from_levels(
                msg.get("yes_dollars_fp", []), msg.get("no_dollars_fp", [])
            )
        elif frame["type"] == "orderbook_delta":
            books[msg["market_ticker"]].apply_delta(
                msg["side"], parse_price(msg["price_dollars"]), parse_count(msg["delta_fp"])
            )
    assert set(books) == set(stream.subscribed_tickers)
    for ticker, book in books.items():
        assert book == stream.exchange.book(ticker)


def test_offline_stream_is_deterministic_with_faults():
    faults = FaultConfig(drop_rate=0.05, duplicate_rate=0.05, malformed_rate=0.05, reorder_rate=0.05)
    a = offline_stream(seed=4, markets=5, steps=500, faults=faults)
    b = offline_stream(seed=4, markets=5, steps=500, faults=faults)
    assert a.frames == b.frames and len(a.frames) > 500
