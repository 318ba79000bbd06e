"""`manage.py export --format nautilus`: a BacktestEngine sees the books /orderbook has."""

import bisect
import random
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command

from tests.backtest_api.conftest import data_of

from markets.models import Market, Settlement

from .uncrossed import MARKET, record_engine_day

pytest.importorskip("nautilus_trader")
from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig  # noqa: E402
from nautilus_trader.config import LoggingConfig, StrategyConfig  # noqa: E402
from nautilus_trader.model.currencies import USD  # noqa: E402
from nautilus_trader.model.enums import (  # noqa: E402
    AccountType,
    BookType,
    InstrumentCloseType,
    MarketStatusAction,
    OmsType,
)
from nautilus_trader.model.identifiers import InstrumentId, TraderId, Venue  # noqa: E402
from nautilus_trader.model.instruments import BinaryOption  # noqa: E402
from nautilus_trader.model.objects import Money  # noqa: E402
from nautilus_trader.persistence.catalog import ParquetDataCatalog  # noqa: E402
from nautilus_trader.trading.strategy import Strategy  # noqa: E402

pytestmark = pytest.mark.django_db
DAY = date(2026, 11, 21)


class RecorderConfig(StrategyConfig, frozen=True):
    instrument_id: str


class TopOfBookRecorder(Strategy):
    """Records the best bid and ask after every book update, and counts trades."""

    def __init__(self, config: RecorderConfig):
        super().__init__(config)
        self.instrument_id = InstrumentId.from_str(config.instrument_id)
        self.tops = []  # (ts_init, best bid, best ask)
        self.trades = 0

    def on_start(self):
        self.subscribe_order_book_deltas(self.instrument_id, book_type=BookType.L2_MBP)
        self.subscribe_trade_ticks(self.instrument_id)

    def on_order_book_deltas(self, deltas):
        book = self.cache.order_book(self.instrument_id)
        bid, ask = book.best_bid_price(), book.best_ask_price()
        self.tops.append((deltas.ts_init, bid and bid.as_decimal(), ask and ask.as_decimal()))

    def on_trade_tick(self, tick):
        self.trades += 1


def _ns(moment):
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def _price(level):
    return None if level is None else Decimal(level["price"])


def test_a_backtest_engine_sees_the_books_and_trades_of_the_record(api, tmp_path):
    day = record_engine_day(DAY)
    Settlement.objects.create(market_ticker=MARKET, result="yes", settlement_value=Decimal(1),
                              settled_at=day.instants[-1] + timedelta(hours=2))
    Market.objects.filter(ticker=MARKET).update(close_time=day.instants[-1] + timedelta(hours=1))
    call_command("export", "--start-date", str(DAY), "--end-date", str(DAY),
                 "--markets", MARKET, "--format", "nautilus", "--out", str(tmp_path))
    catalog = ParquetDataCatalog(str(tmp_path / "nautilus"))
    (instrument,) = catalog.instruments()
    assert isinstance(instrument, BinaryOption)
    assert str(instrument.id) == f"{MARKET}.KALSHI"
    assert (instrument.price_precision, instrument.size_precision) == (4, 2)
    assert instrument.quote_currency == USD
    (status,) = catalog.instrument_status(instrument_ids=[str(instrument.id)])
    assert status.action == MarketStatusAction.CLOSE
    assert status.ts_event == _ns(day.instants[-1] + timedelta(hours=1))
    (close,) = catalog.instrument_closes()
    assert close.close_price.as_decimal() == 1
    assert close.close_type == InstrumentCloseType.CONTRACT_EXPIRED

    engine = BacktestEngine(BacktestEngineConfig(
        trader_id=TraderId("BACKTESTER-001"), logging=LoggingConfig(log_level="ERROR")))
    try:
        engine.add_venue(venue=Venue("KALSHI"), oms_type=OmsType.NETTING,
                         account_type=AccountType.CASH, base_currency=USD,
                         starting_balances=[Money(1_000, USD)], book_type=BookType.L2_MBP)
        engine.add_instrument(instrument)
        engine.add_data(catalog.order_book_deltas(instrument_ids=[str(instrument.id)]))
        engine.add_data(catalog.trade_ticks(instrument_ids=[str(instrument.id)]))
        recorder = TopOfBookRecorder(RecorderConfig(instrument_id=str(instrument.id)))
        engine.add_strategy(recorder)
        engine.run()
    finally:
        engine.dispose()

    assert recorder.trades == day.trades
    stamps = [t[0] for t in recorder.tops]
    rng = random.Random(4)
    pairs = sorted(rng.sample(range(len(day.instants) - 1), 40))
    checks = [day.instants[i] + (day.instants[i + 1] - day.instants[i]) / 2 for i in pairs]
    for check in checks:
        position = bisect.bisect_right(stamps, _ns(check)) - 1
        assert position >= 0
        _, bid, ask = recorder.tops[position]
        book = data_of(api.get("/api/v1/orderbook", {
            "market_ticker": MARKET, "timestamp": check.isoformat()}))
        assert (bid, ask) == (_price(book["best"]["yes_bid"]), _price(book["best"]["yes_ask"])), (
            check)
