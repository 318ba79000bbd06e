"""A market's day as hftbacktest data: `.npz` files of its `event_dtype`.

hftbacktest (https://github.com/nkaz001/hftbacktest) backtests one
instrument's L2 book with queue models. Kalshi's book is bids on both sides;
here it becomes the YES contract's book: a YES bid at p is a bid at p, a NO
bid at q is an ask at 1 - q (what `best_ask("yes")` says). Per market and
UTC day, two files (`np.savez_compressed(..., data=array)`, as hftbacktest
reads them):

    <out>/hftbacktest/<TICKER>/<DAY>.snapshot.npz   the book at 00:00 UTC, to
        pass as `BacktestAsset().initial_snapshot(...)` (DEPTH_SNAPSHOT_EVENT rows)
    <out>/hftbacktest/<TICKER>/<DAY>.npz            the day's events, for `.data(...)`

Events, from the record's own replay stream (markets/replay_stream.py, so
the tables can change underneath): a delta is a DEPTH_EVENT carrying the
level's new absolute quantity (0 when it goes); a trade a TRADE_EVENT at the
YES price, BUY when the taker bought YES; a stored re-baseline (Kalshi's
snapshot after a (re)subscription or a resync after a gap) a
DEPTH_CLEAR_EVENT without side (clears both) followed by DEPTH_SNAPSHOT_EVENT
rows. The collector's checkpoints repeat the book and are left out.
`exch_ts` is the exchange's time (our receive time when Kalshi sent none;
never after the receive time: clocks differ, and a negative feed latency
would make hftbacktest shift the whole day), `local_ts` our receive time,
both in nanoseconds. On the exchange's clock a trade comes before the depth
changes at the same instant (the ones it caused). Rows are split into
exchange and local events by hftbacktest's own `correct_event_order` and
checked by its `validate_event_order`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Iterable, Iterator

from .book import OrderBook
from .export import _midnight
from .replay_stream import replay_events

ONE_DOLLAR = Decimal(1)
# Kalshi's grid: sub-cent prices exist; counts have two decimals.
TICK_SIZE = 0.0001
LOT_SIZE = 0.01
# Ranks on the exchange's clock at one instant: the trade before the depth it moved.
_RANK_TRADE, _RANK_DEPTH = 0, 1


@dataclass
class HftbacktestFiles:
    market_ticker: str
    day: date
    data: Path
    snapshot: Path
    events: int  # rows in the data file (after the split into exchange/local events)
    trades: int


def _ns(value: str | None) -> int | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    epoch = moment - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (epoch.days * 86_400 + epoch.seconds) * 1_000_000_000 + epoch.microseconds * 1000


def _book_rows(book: OrderBook, kind: int, buy: int, sell: int, ts: int) -> Iterator[tuple]:
    for price, size in book.levels("yes"):
        yield (kind | buy, ts, ts, float(price), float(size), _RANK_DEPTH)
    for price, size in book.levels("no"):
        yield (kind | sell, ts, ts, float(ONE_DOLLAR - price), float(size), _RANK_DEPTH)


def hftbacktest_rows(events: Iterable[dict]) -> tuple[list[tuple], list[tuple]]:
    """(snapshot rows, event rows) from one market's replay events, opening snapshot first.

    Rows are (ev, exch_ts, local_ts, px, qty, rank) without the EXCH/LOCAL flags.
    """
    from hftbacktest.types import (
        BUY_EVENT,
        DEPTH_CLEAR_EVENT,
        DEPTH_EVENT,
        DEPTH_SNAPSHOT_EVENT,
        SELL_EVENT,
        TRADE_EVENT,
    )

    book = OrderBook()
    initial: list[tuple] = []
    rows: list[tuple] = []
    for event in events:
        kind = event["type"]
        local = _ns(event["received_at"])
        exch = min(_ns(event.get("ts")) or local, local)
        if kind == "snapshot":
            book = OrderBook.from_levels(event["yes"], event["no"])
            if event["source"] == "start":
                initial = list(_book_rows(book, DEPTH_SNAPSHOT_EVENT, BUY_EVENT, SELL_EVENT,
                                          local))
            elif event["source"] != "checkpoint":
                rows.append((DEPTH_CLEAR_EVENT, local, local, 0.0, 0.0, _RANK_DEPTH))
                rows.extend(_book_rows(book, DEPTH_SNAPSHOT_EVENT, BUY_EVENT, SELL_EVENT,
                                       local))
        elif kind == "delta":
            price = Decimal(event["price"])
            size = book.apply_delta(event["side"], price, Decimal(event["delta"]))
            if event["side"] == "yes":
                rows.append((DEPTH_EVENT | BUY_EVENT, exch, local, float(price), float(size),
                             _RANK_DEPTH))
            else:
                rows.append((DEPTH_EVENT | SELL_EVENT, exch, local, float(ONE_DOLLAR - price),
                             float(size), _RANK_DEPTH))
        elif kind == "trade":
            taker = event.get("taker_outcome_side") or event.get("taker_side")
            side = BUY_EVENT if taker == "yes" else SELL_EVENT
            rows.append((TRADE_EVENT | side, exch, local, float(Decimal(event["yes_price"])),
                         float(Decimal(event["count"])), _RANK_TRADE))
    return initial, rows


def _array(rows: list[tuple], *, split: bool):
    import numpy as np
    from hftbacktest.data.validation import correct_event_order, validate_event_order
    from hftbacktest.types import EXCH_EVENT, LOCAL_EVENT, event_dtype

    data = np.zeros(len(rows), event_dtype)
    if rows:
        columns = list(zip(*rows))
        for name, values in zip(("ev", "exch_ts", "local_ts", "px", "qty"), columns):
            data[name] = values
    if not split:
        data["ev"] |= EXCH_EVENT | LOCAL_EVENT
        return data
    if not rows:
        return data
    rank = np.array(columns[5], dtype=np.int64)
    index = np.arange(len(rows))
    # lexsort: the last key is the primary one. Rows equal on both clocks
    # keep one relative order in both sorts, as correct_event_order needs.
    by_exchange = np.lexsort((index, rank, data["exch_ts"]))
    by_local = np.lexsort((index, rank, data["local_ts"]))
    data = correct_event_order(data, by_exchange, by_local)
    validate_event_order(data)
    return data


def export_hftbacktest_day(*, market_ticker: str, day: date,
                           out_dir: Path) -> HftbacktestFiles | None:
    """Write one market's day (00:00 to 24:00 UTC) as hftbacktest's data and snapshot files.

    None, and no file, for a day without a book or an event (most markets,
    most days, when every market is exported).
    """
    import numpy as np
    from hftbacktest.types import LOCAL_EVENT, TRADE_EVENT

    start = _midnight(day)
    events = replay_events(market_tickers=[market_ticker], start_time=start,
                           end_time=start + timedelta(days=1), types=("deltas", "trades"))
    initial, rows = hftbacktest_rows(events)
    if not initial and not rows:
        return None
    folder = Path(out_dir) / "hftbacktest" / market_ticker
    folder.mkdir(parents=True, exist_ok=True)
    data = _array(rows, split=True)
    snapshot = _array(initial, split=False)
    paths = folder / f"{day.isoformat()}.npz", folder / f"{day.isoformat()}.snapshot.npz"
    for path, array in zip(paths, (data, snapshot)):
        partial = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(partial, data=array)
        partial.replace(path)  # readers never see half a file
    # The event kind is the low byte; flags (exchange, local, side) are high bits.
    trades = int(np.sum(((data["ev"] & 0xFF) == TRADE_EVENT)
                        & ((data["ev"] & LOCAL_EVENT) != 0)))
    return HftbacktestFiles(market_ticker, day, paths[0], paths[1], len(data), trades)
