"""A market's day as a NautilusTrader `ParquetDataCatalog`, written by NautilusTrader.

Conventions of NautilusTrader's Kalshi adapter (nautilus-kalshi), so a
strategy backtested on this catalog runs live unchanged:

* one `BinaryOption` per market, `<TICKER>.KALSHI`, in USD, price precision
  4 and size precision 2 (Kalshi's sub-cent prices and fractional counts);
* `OrderBookDelta`s of an L2 (by price) book of the YES contract: YES bids
  are buy levels at their price, NO bids sell levels at 1 - price; a delta
  carries the level's new size (ADD a new level, UPDATE one, DELETE at 0),
  flagged F_LAST (each is its own batch); a snapshot (the book at 00:00 UTC,
  and every stored re-baseline: Kalshi's snapshot after a (re)subscription or
  a resync after a gap) is a CLEAR then ADDs, all flagged F_SNAPSHOT, the last
  one F_LAST too. The collector's checkpoints repeat the book: left out;
* `TradeTick`s at the YES price, the aggressor the taker's side (BUYER when
  the taker bought YES);
* `ts_event` the exchange's time (our receive time when Kalshi sent none),
  `ts_init` our receive time, in nanoseconds;
* the market's close (its `close_time`, when trading stops) as an
  `InstrumentStatus` CLOSE, and its resolution as an `InstrumentClose`
  (CONTRACT_EXPIRED, at the settlement value: 1 for yes, 0 for no), in the
  export of the day each happened.

Events come from the record's own replay stream (markets/replay_stream.py),
so the tables can change underneath.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Iterable

from .book import OrderBook
from .export import _midnight
from .models import Market
from .replay_stream import replay_events
from .selectors import settlement_get

VENUE = "KALSHI"
ONE_DOLLAR = Decimal(1)
PRICE_PRECISION, SIZE_PRECISION = 4, 2


@dataclass
class NautilusDay:
    market_ticker: str
    day: date
    instrument_id: str
    deltas: int
    trades: int
    closes: int


def _ns(value: str | datetime | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    epoch = value - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (epoch.days * 86_400 + epoch.seconds) * 1_000_000_000 + epoch.microseconds * 1000


def instrument_for(market: Market):
    """The market's `BinaryOption` (the YES contract)."""
    from nautilus_trader.model.currencies import USD
    from nautilus_trader.model.enums import AssetClass
    from nautilus_trader.model.identifiers import InstrumentId, Symbol, Venue
    from nautilus_trader.model.instruments import BinaryOption
    from nautilus_trader.model.objects import Price, Quantity

    stamp = _ns(market.updated_at) or 0
    return BinaryOption(
        instrument_id=InstrumentId(Symbol(market.ticker), Venue(VENUE)),
        raw_symbol=Symbol(market.ticker),
        asset_class=AssetClass.ALTERNATIVE,
        currency=USD,
        price_precision=PRICE_PRECISION,
        size_precision=SIZE_PRECISION,
        price_increment=Price.from_str("0.0001"),
        size_increment=Quantity.from_str("0.01"),
        activation_ns=_ns(market.open_time) or 0,
        expiration_ns=_ns(market.expiration_time or market.close_time) or 0,
        ts_event=stamp,
        ts_init=stamp,
        outcome="Yes",
        description=market.title or market.ticker,
    )


def nautilus_records(instrument_id, events: Iterable[dict]) -> tuple[list, list]:
    """(order-book deltas, trade ticks) from one market's replay events."""
    from nautilus_trader.model.data import BookOrder, OrderBookDelta, TradeTick
    from nautilus_trader.model.enums import AggressorSide, BookAction, OrderSide, RecordFlag
    from nautilus_trader.model.identifiers import TradeId
    from nautilus_trader.model.objects import Price, Quantity

    snapshot_flag, last_flag = int(RecordFlag.F_SNAPSHOT), int(RecordFlag.F_LAST)

    def level(side: str, price: Decimal) -> tuple:
        if side == "yes":
            return OrderSide.BUY, Price(price, PRICE_PRECISION)
        return OrderSide.SELL, Price(ONE_DOLLAR - price, PRICE_PRECISION)

    book = OrderBook()
    deltas: list = []
    trades: list = []
    for event in events:
        kind = event["type"]
        ts_init = _ns(event["received_at"])
        ts_event = _ns(event.get("ts")) or ts_init
        if kind == "snapshot":
            book = OrderBook.from_levels(event["yes"], event["no"])
            if event["source"] == "checkpoint":
                continue
            seq = event.get("seq") or 0
            batch = [OrderBookDelta(instrument_id, BookAction.CLEAR, None, snapshot_flag, seq,
                                    ts_event, ts_init)]
            for side in ("yes", "no"):
                for price, size in book.levels(side):
                    order_side, px = level(side, price)
                    batch.append(OrderBookDelta(
                        instrument_id, BookAction.ADD,
                        BookOrder(order_side, px, Quantity(size, SIZE_PRECISION), 0),
                        snapshot_flag, seq, ts_event, ts_init))
            last = batch[-1]
            batch[-1] = OrderBookDelta(last.instrument_id, last.action,
                                       last.order if last.action != BookAction.CLEAR else None,
                                       snapshot_flag | last_flag, seq, ts_event, ts_init)
            deltas.extend(batch)
        elif kind == "delta":
            price = Decimal(event["price"])
            levels = book.yes if event["side"] == "yes" else book.no
            before = levels.get(price, Decimal(0))
            size = book.apply_delta(event["side"], price, Decimal(event["delta"]))
            if size > 0:
                action = BookAction.UPDATE if before > 0 else BookAction.ADD
            elif before > 0:
                action = BookAction.DELETE
            else:
                continue  # nothing was there and nothing is: no change to the book
            order_side, px = level(event["side"], price)
            deltas.append(OrderBookDelta(
                instrument_id, action, BookOrder(order_side, px, Quantity(size, SIZE_PRECISION), 0),
                last_flag, event["seq"], ts_event, ts_init))
        elif kind == "trade":
            taker = event.get("taker_outcome_side") or event.get("taker_side")
            aggressor = {"yes": AggressorSide.BUYER, "no": AggressorSide.SELLER}.get(
                taker, AggressorSide.NO_AGGRESSOR)
            trades.append(TradeTick(
                instrument_id, Price(Decimal(event["yes_price"]), PRICE_PRECISION),
                Quantity(Decimal(event["count"]), SIZE_PRECISION), aggressor,
                TradeId(event["trade_id"]), ts_event, ts_init))
    return deltas, trades


def export_nautilus_day(*, market_ticker: str, day: date, out_dir: Path) -> NautilusDay | None:
    """Write one market's day (00:00 to 24:00 UTC) into the catalog at `<out_dir>/nautilus`.

    None, and nothing written, for a day without a book, a trade or a close
    (then the only delta is the opening snapshot's CLEAR).
    """
    from nautilus_trader.model.data import InstrumentClose, InstrumentStatus
    from nautilus_trader.model.enums import InstrumentCloseType, MarketStatusAction
    from nautilus_trader.model.objects import Price
    from nautilus_trader.persistence.catalog import ParquetDataCatalog

    market = Market.objects.get(ticker=market_ticker)
    instrument = instrument_for(market)
    start = _midnight(day)
    end = start + timedelta(days=1)
    events = replay_events(market_tickers=[market_ticker], start_time=start, end_time=end,
                           types=("deltas", "trades"))
    deltas, trades = nautilus_records(instrument.id, events)
    statuses, resolutions = [], []  # the market's close, its resolution
    settlement = settlement_get(market_ticker)
    if (settlement is not None and settlement.settled_at is not None
            and start <= settlement.settled_at < end and settlement.settlement_value is not None):
        stamp = _ns(settlement.settled_at)
        resolutions.append(InstrumentClose(
            instrument.id, Price(settlement.settlement_value, PRICE_PRECISION),
            InstrumentCloseType.CONTRACT_EXPIRED, stamp, stamp))
    if market.close_time is not None and start <= market.close_time < end:
        stamp = _ns(market.close_time)
        statuses.append(InstrumentStatus(instrument.id, MarketStatusAction.CLOSE, stamp, stamp))
    if len(deltas) <= 1 and not trades and not statuses and not resolutions:
        return None
    catalog = ParquetDataCatalog(str(Path(out_dir) / "nautilus"))
    catalog.write_data([instrument])
    for records in (deltas, trades, statuses, resolutions):
        if records:
            catalog.write_data(records)
    return NautilusDay(market_ticker, day, str(instrument.id), len(deltas), len(trades),
                       len(statuses) + len(resolutions))
