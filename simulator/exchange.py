"""The simulated exchange's market engine: pure, seedable, deterministic, no I/O.

`Exchange(seed=..., markets=N, start_ms=...)` lists series -> events -> markets
with bids-only books on both sides (sub-cent grids and fractional sizes on
some markets), and `step(now_ms)` makes one thing happen: a resting order
added or cancelled, a taker trade that consumes resting bids, a block trade,
and now and then a lifecycle change (new market or event, pause, early close,
determination, settlement, tick-size or fee change). The same seed and the
same `now_ms` inputs give the same events, byte for byte.

Trades are consistent with the books: a taker buying YES lifts the implied
YES ask, i.e. consumes NO bids at price p and trades at yes_price = 1 - p;
the consumed size shows up as a negative delta on that NO level.

A market that is determined keeps the book it had (no more deltas); the
stream and the truth agree on that.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import random
import uuid
from dataclasses import dataclass
from decimal import Decimal

from markets.book import OrderBook
from markets.fixedpoint import COUNT_QUANTUM, PRICE_QUANTUM

from .catalog import ONE, Event, Market, Series, Trade, price_grid
from .events import (
    BookDelta,
    EventCreated,
    EventFeeUpdate,
    ExchangeEvent,
    MarketCreated,
    MarketLifecycle,
    TradeExecuted,
)

DAY_MS = 86_400_000
TOPICS = ("HIGHNY", "RAINSEA", "FEDRATE", "CPIYOY", "BTCD", "ETHD", "GDPQ", "SNOWCHI", "NBAGAME", "INXD")
CATEGORIES = ("Climate and Weather", "Economics", "Financials", "Crypto", "Sports")
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


@dataclass(frozen=True)
class EngineConfig:
    """Every number of the engine's behaviour, defined once."""

    markets: int = 10
    markets_per_event: int = 3
    events_per_series: int = 2
    levels_per_side: int = 6  # initial resting levels per side
    # Chance per step of one random lifecycle change (new market, pause, ...).
    lifecycle_probability: float = 0.02
    # Steps between early close and determination, and determination and settlement.
    determine_after_steps: int = 20
    settle_after_steps: int = 40
    reactivate_after_steps: int = 30
    # Trades before the start, for the historical tier and backfills.
    past_trades_per_market: int = 10
    # Three hours: with the default historical age and step (1 h each) the
    # cutoff is always 1-2 h back, so the first hour is always historical.
    past_span_ms: int = 3 * 3_600_000
    past_settled_markets: int = 2
    # Whole cents and whole contracts only: the legacy wire formats cannot say more.
    whole_units_only: bool = False
    # Multivariate ("combo") markets listed at the start, under their own
    # event; they have books but no trading, as most of Kalshi's combos.
    combo_markets: int = 0


class Exchange:
    """The whole simulated venue: catalog, books, trades, lifecycle."""

    def __init__(self, *, seed: int = 0, start_ms: int, config: EngineConfig | None = None):
        self.config = config or EngineConfig()
        self.rng = random.Random(seed)
        self.series: dict[str, Series] = {}
        self.events: dict[str, Event] = {}
        self.markets: dict[str, Market] = {}
        self.books: dict[str, OrderBook] = {}
        self.trades: list[Trade] = []
        self.steps = 0
        self._scheduled: list[tuple[int, str, str]] = []  # (step, action, ticker)
        self._ticker_serial = 0
        # Tickers of the tradable markets, kept as markets change status,
        # so that a step does not scan every market ever listed.
        self._active: list[str] = []
        self._active_pos: dict[str, int] = {}
        self._combo_event: Event | None = None  # where combo markets are listed (combo_markets > 0)
        self._build_catalog(start_ms)
        self._build_combos(start_ms)

    # -- reading ------------------------------------------------------------

    def book(self, ticker: str) -> OrderBook:
        return self.books[ticker]

    def tradable_markets(self) -> list[Market]:
        return [self.markets[t] for t in self._active]

    # -- the clock's one entry point -----------------------------------------

    def step(self, now_ms: int) -> list[ExchangeEvent]:
        """Advance one step at `now_ms`; return what happened, in order."""
        self.steps += 1
        out: list[ExchangeEvent] = []
        out += self._run_scheduled(now_ms)
        if self.rng.random() < self.config.lifecycle_probability:
            out += self._random_lifecycle(now_ms)
        if not self._active:
            return out
        market = self.markets[self.rng.choice(self._active)]
        self._drift(market)
        roll = self.rng.random()
        if roll < 0.45:
            out += self._add_order(market, now_ms) or self._cancel(market, now_ms)
        elif roll < 0.75:
            out += self._cancel(market, now_ms) or self._add_order(market, now_ms)
        elif roll < 0.98:
            out += self._take(market, now_ms) or self._add_order(market, now_ms)
        else:
            out += self._block_trade(market, now_ms)
        return out

    # -- catalog ------------------------------------------------------------

    def _build_catalog(self, start_ms: int) -> None:
        cfg = self.config
        per_series = cfg.markets_per_event * cfg.events_per_series
        n_series = max(1, -(-cfg.markets // per_series))
        made = 0
        for s in range(n_series):
            series = self._new_series(s, start_ms)
            for e in range(cfg.events_per_series):
                if made >= cfg.markets:
                    break
                event = self._new_event(series, start_ms - DAY_MS, day_offset=e)
                for _ in range(cfg.markets_per_event):
                    if made >= cfg.markets:
                        break
                    self._new_market(event, start_ms - DAY_MS, seed_book=True)
                    made += 1
        self._make_past(start_ms)

    def _build_combos(self, start_ms: int) -> None:
        """Combo markets: each selects legs among the plain markets (made last, so the
        draws of the plain catalog do not depend on how many there are)."""
        if not self.config.combo_markets:
            return
        series = self._new_series(len(self.series), start_ms)
        event = self._new_event(series, start_ms - DAY_MS, day_offset=0)
        event.multivariate = True
        self._combo_event = event
        for _ in range(self.config.combo_markets):
            self._new_combo(event, start_ms - DAY_MS)

    def _new_combo(self, event: Event, now_ms: int) -> Market:
        """A combo market (new ones too: their `created` goes on multivariate_market_lifecycle)."""
        market = self._new_market(event, now_ms, seed_book=True)
        market.mve_collection_ticker = f"KXMVE{event.series_ticker}"
        plain = self._active[:50]
        market.mve_selected_legs = [
            {"event_ticker": self.markets[t].event_ticker, "market_ticker": t, "side": self.rng.choice(("yes", "no"))}
            for t in self.rng.sample(plain, min(2, len(plain)))
        ]
        self._track(market)  # out of the tradable list
        return market

    def _new_series(self, index: int, now_ms: int) -> Series:
        topic = TOPICS[index % len(TOPICS)]
        ticker = f"KX{topic}" + (str(index // len(TOPICS)) if index >= len(TOPICS) else "")
        series = Series(
            ticker=ticker,
            title=f"Simulated {topic.lower()} series",
            category=CATEGORIES[index % len(CATEGORIES)],
            frequency=self.rng.choice(("daily", "weekly", "one-off")),
            tags=[topic.lower(), "simulated"],
            fee_type=self.rng.choice(("quadratic", "quadratic_with_maker_fees", "flat")),
            fee_multiplier=Decimal(self.rng.choice(("1", "0.5", "0.25"))),
            updated_ms=now_ms,
        )
        self.series[ticker] = series
        return series

    def _new_event(self, series: Series, now_ms: int, *, day_offset: int) -> Event:
        day_ms = now_ms + (day_offset + 2) * DAY_MS
        date = _ticker_date(day_ms)
        ticker = f"{series.ticker}-{date}"
        while ticker in self.events:
            self._ticker_serial += 1
            ticker = f"{series.ticker}-{date}{self._ticker_serial}"
        event = Event(
            event_ticker=ticker,
            series_ticker=series.ticker,
            title=f"{series.title} on {date}",
            sub_title=f"On {date}",
            mutually_exclusive=self.rng.random() < 0.5,
            collateral_return_type=self.rng.choice(("MECNET", "DIRECNET", "")),
            strike_date_ms=day_ms,
            created_ms=now_ms,
            order=len(self.events),
        )
        self.events[ticker] = event
        return event

    def _new_market(self, event: Event, now_ms: int, *, seed_book: bool) -> Market:
        strike = 10 * self.rng.randint(1, 999)
        ticker = f"{event.event_ticker}-T{strike}"
        while ticker in self.markets:
            strike += 1
            ticker = f"{event.event_ticker}-T{strike}"
        if self.config.whole_units_only:
            structure, fractional = "linear_cent", False
        else:
            structure = self.rng.choice(("linear_cent", "linear_cent", "deci_cent", "tapered_deci_cent"))
            fractional = self.rng.random() < 0.5
        market = Market(
            ticker=ticker,
            event_ticker=event.event_ticker,
            series_ticker=event.series_ticker,
            market_id=str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            title=f"{event.title}: above {strike}?",
            yes_sub_title=f"{strike} or above",
            no_sub_title=f"below {strike}",
            rules_primary=f"If the value is {strike} or above, the market resolves to Yes.",
            strike_type="greater_or_equal",
            floor_strike=strike,
            status="active",
            created_ms=now_ms,
            open_ms=now_ms,
            close_ms=event.strike_date_ms,
            expected_expiration_ms=event.strike_date_ms + 3_600_000,
            latest_expiration_ms=event.strike_date_ms + 7 * DAY_MS,
            price_level_structure=structure,
            fractional=fractional,
            order=len(self.markets),
            updated_ms=now_ms,
            fair=self._grid_price(structure, Decimal("0.15"), Decimal("0.85")),
        )
        self.markets[ticker] = market
        self.books[ticker] = OrderBook()
        self._track(market)
        if seed_book:
            for _ in range(self.config.levels_per_side * 2):
                self._add_order(market, now_ms)
        return market

    def _make_past(self, start_ms: int) -> None:
        """Trades before the start, and markets that settled before it."""
        cfg = self.config
        span = cfg.past_span_ms
        for market in list(self.markets.values()):
            for i in range(cfg.past_trades_per_market):
                ts = start_ms - span + (span * i) // max(1, cfg.past_trades_per_market)
                ts += self.rng.randint(0, 999)
                price = self._grid_price(market.price_level_structure, Decimal("0.05"), Decimal("0.95"))
                self._record_trade(
                    market, price, self._size(market, 50), self.rng.choice(("yes", "no")), ts, False
                )
        self.trades.sort(key=lambda t: t.ts_ms)
        self.trades = [_reindex(t, i) for i, t in enumerate(self.trades)]
        events = list(self.events.values())
        for i in range(min(cfg.past_settled_markets, len(events))):
            market = self._new_market(events[i], start_ms - span, seed_book=False)
            self._set_status(market, "finalized")
            market.result = self.rng.choice(("yes", "no"))
            market.settlement_value = ONE if market.result == "yes" else Decimal(0)
            market.close_ms = start_ms - span + (i + 1) * 60_000
            market.determined_ms = market.close_ms + 1000
            market.settled_ms = market.close_ms + 60_000
            market.updated_ms = market.settled_ms

    # -- book actions ---------------------------------------------------------

    def _drift(self, market: Market) -> None:
        """Move the hidden fair price by at most one cent now and then."""
        if self.rng.random() < 0.1:
            move = Decimal("0.01") * self.rng.choice((-1, 1))
            market.fair = min(Decimal("0.95"), max(Decimal("0.05"), market.fair + move))

    def _add_order(self, market: Market, now_ms: int) -> list[ExchangeEvent]:
        """A new resting bid on either side that does not cross the other side."""
        book = self.books[market.ticker]
        side = self.rng.choice(("yes", "no"))
        other = book.best_bid("no" if side == "yes" else "yes")
        fair = market.fair if side == "yes" else ONE - market.fair
        low = max(Decimal("0.0001"), fair - Decimal("0.20"))
        high = fair - Decimal("0.0001")
        if other is not None:
            high = min(high, ONE - other[0] - Decimal("0.0001"))
        price = self._grid_price(market.price_level_structure, low, high)
        if price is None:
            return []
        return [self._delta(market, side, price, self._size(market, 300), now_ms)]

    def _cancel(self, market: Market, now_ms: int) -> list[ExchangeEvent]:
        """Cancel all or part of one resting level."""
        book = self.books[market.ticker]
        sides = [s for s in ("yes", "no") if book.levels(s)]
        if not sides:
            return []
        side = self.rng.choice(sides)
        price, size = self.rng.choice(book.levels(side))
        amount = size if self.rng.random() < 0.4 else min(size, self._size(market, max(1, int(size))))
        return [self._delta(market, side, price, -amount, now_ms)]

    def _take(self, market: Market, now_ms: int) -> list[ExchangeEvent]:
        """A taker crosses the spread, consuming resting bids level by level."""
        book = self.books[market.ticker]
        taker = self.rng.choice(("yes", "no"))
        # Buying YES consumes NO bids, buying NO consumes YES bids.
        consumed_side = "no" if taker == "yes" else "yes"
        levels = book.levels(consumed_side)
        if not levels:
            return []
        wanted = self._size(market, 120)
        out: list[ExchangeEvent] = []
        for price, size in levels[: self.rng.randint(1, 3)]:
            if wanted <= 0:
                break
            count = min(size, wanted)
            wanted -= count
            out.append(self._delta(market, consumed_side, price, -count, now_ms))
            yes_price = ONE - price if taker == "yes" else price
            out.append(TradeExecuted(self._record_trade(market, yes_price, count, taker, now_ms, False)))
        return out

    def _block_trade(self, market: Market, now_ms: int) -> list[ExchangeEvent]:
        """An off-book match: a trade with no book change."""
        price = self._grid_price(market.price_level_structure, Decimal("0.05"), Decimal("0.95"))
        trade = self._record_trade(
            market, price, self._size(market, 500), self.rng.choice(("yes", "no")), now_ms, True
        )
        return [TradeExecuted(trade)]

    def _delta(self, market: Market, side: str, price: Decimal, delta: Decimal, now_ms: int) -> BookDelta:
        self.books[market.ticker].apply_delta(side, price, delta)
        return BookDelta(market.ticker, side, price, delta, now_ms)

    def _record_trade(self, market, yes_price, count, taker, ts_ms, block) -> Trade:
        trade = Trade(
            trade_id=str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            market_ticker=market.ticker,
            yes_price=yes_price,
            no_price=ONE - yes_price,
            count=count,
            taker_outcome_side=taker,
            is_block_trade=block,
            ts_ms=ts_ms,
            index=len(self.trades),
        )
        self.trades.append(trade)
        market.last_price = yes_price
        market.last_trade_size = count
        market.volume += count
        market.open_interest += count if self.rng.random() < 0.6 else 0
        return trade

    # -- lifecycle ------------------------------------------------------------

    def _random_lifecycle(self, now_ms: int) -> list[ExchangeEvent]:
        roll = self.rng.random()
        active = self.tradable_markets()
        if roll < 0.35 or len(active) < 2:
            return self._create(now_ms)
        market = self.rng.choice(active)
        if roll < 0.60:
            return self._close_early(market, now_ms)
        if roll < 0.72:
            self._set_status(market, "inactive")
            self._schedule(self.config.reactivate_after_steps, "activate", market.ticker)
            return [MarketLifecycle(market.ticker, "deactivated", now_ms, {"is_deactivated": True})]
        if roll < 0.80 and market.price_level_structure == "linear_cent" and not self.config.whole_units_only:
            market.price_level_structure = "deci_cent"
            market.updated_ms = now_ms
            return [
                MarketLifecycle(
                    market.ticker,
                    "price_level_structure_updated",
                    now_ms,
                    {"price_level_structure": "deci_cent", "price_ranges": _ranges(market)},
                )
            ]
        if roll < 0.90:
            market.yes_sub_title = f"{market.floor_strike} or more"
            market.updated_ms = now_ms
            return [
                MarketLifecycle(
                    market.ticker,
                    "metadata_updated",
                    now_ms,
                    {
                        "yes_sub_title": market.yes_sub_title,
                        "strike_type": market.strike_type,
                        "floor_strike": market.floor_strike,
                    },
                )
            ]
        event = self.events[market.event_ticker]
        if event.fee_type_override is None:
            event.fee_type_override, event.fee_multiplier_override = "quadratic", Decimal("0.5")
        else:
            event.fee_type_override, event.fee_multiplier_override = None, None
        return [
            EventFeeUpdate(event.event_ticker, event.fee_type_override, event.fee_multiplier_override, now_ms)
        ]

    def _create(self, now_ms: int) -> list[ExchangeEvent]:
        if self._combo_event is not None and self.rng.random() < 0.3:
            return [MarketCreated(self._new_combo(self._combo_event, now_ms), now_ms)]
        return self.create_market(now_ms)

    def create_market(self, now_ms: int) -> list[ExchangeEvent]:
        """A new (non-combo) market, in a new event or an existing one."""
        out: list[ExchangeEvent] = []
        if self.rng.random() < 0.5 or not self.events:
            if self.rng.random() < 0.2:
                # A series nobody has seen yet: the collector must fetch it.
                series = self._new_series(len(self.series), now_ms)
            else:
                series = self.rng.choice(list(self.series.values()))
            event = self._new_event(series, now_ms, day_offset=self.rng.randint(0, 5))
            out.append(EventCreated(event, now_ms))
        else:
            event = self.rng.choice(list(self.events.values()))
        market = self._new_market(event, now_ms, seed_book=False)
        out.append(MarketCreated(market, now_ms))
        return out

    def _close_early(self, market: Market, now_ms: int) -> list[ExchangeEvent]:
        self._set_status(market, "closed")
        market.close_ms = now_ms
        market.updated_ms = now_ms
        self._schedule(self.config.determine_after_steps, "determine", market.ticker)
        return [MarketLifecycle(market.ticker, "close_date_updated", now_ms, {"close_ts": now_ms // 1000})]

    def _schedule(self, after: int, action: str, ticker: str) -> None:
        self._scheduled.append((self.steps + after, action, ticker))

    def _run_scheduled(self, now_ms: int) -> list[ExchangeEvent]:
        due = [s for s in self._scheduled if s[0] <= self.steps]
        if not due:
            return []
        self._scheduled = [s for s in self._scheduled if s[0] > self.steps]
        out: list[ExchangeEvent] = []
        for _, action, ticker in due:
            market = self.markets[ticker]
            market.updated_ms = now_ms
            if action == "activate" and market.status == "inactive":
                # Reactivation cancels every resting order, as on Kalshi.
                for side in ("yes", "no"):
                    for price, size in self.books[ticker].levels(side):
                        out.append(self._delta(market, side, price, -size, now_ms))
                self._set_status(market, "active")
                out.append(MarketLifecycle(ticker, "activated", now_ms, {"is_deactivated": False}))
            elif action == "determine":
                self._set_status(market, "determined")
                market.result = self.rng.choice(("yes", "no"))
                market.settlement_value = ONE if market.result == "yes" else Decimal(0)
                market.determined_ms = now_ms
                self._schedule(self.config.settle_after_steps, "settle", ticker)
                out.append(
                    MarketLifecycle(
                        ticker,
                        "determined",
                        now_ms,
                        {
                            "result": market.result,
                            "settlement_value": str(market.settlement_value.quantize(PRICE_QUANTUM)),
                            "determination_ts": now_ms // 1000,
                        },
                    )
                )
            elif action == "settle":
                self._set_status(market, "finalized")
                market.settled_ms = now_ms
                out.append(MarketLifecycle(ticker, "settled", now_ms, {"settled_ts": now_ms // 1000}))
        return out

    def _set_status(self, market: Market, status: str) -> None:
        market.status = status
        self._track(market)

    def _track(self, market: Market) -> None:
        """Keep `_active` in step with the market's status (swap-remove: O(1))."""
        listed = market.ticker in self._active_pos
        tradable = market.tradable and not market.is_combo
        if tradable and not listed:
            self._active_pos[market.ticker] = len(self._active)
            self._active.append(market.ticker)
        elif listed and not tradable:
            index = self._active_pos.pop(market.ticker)
            last = self._active.pop()
            if last != market.ticker:
                self._active[index] = last
                self._active_pos[last] = index

    # -- numbers --------------------------------------------------------------

    def _grid_price(self, structure: str, low: Decimal, high: Decimal) -> Decimal | None:
        grid = price_grid(structure)
        if self.config.whole_units_only:
            grid = price_grid("linear_cent")
        lo = bisect.bisect_left(grid, low)
        hi = bisect.bisect_right(grid, high)
        if lo >= hi:
            return None
        return grid[self.rng.randrange(lo, hi)]

    def _size(self, market: Market, up_to: int) -> Decimal:
        whole = Decimal(self.rng.randint(1, max(1, up_to)))
        if market.fractional and self.rng.random() < 0.35:
            return (whole - 1 + Decimal(self.rng.randint(1, 99)) / 100).quantize(COUNT_QUANTUM)
        return whole.quantize(COUNT_QUANTUM)


def _ranges(market: Market) -> list[dict]:
    return [{"start": str(s), "end": str(e), "step": str(st)} for s, e, st in market.price_ranges]


def _ticker_date(ms: int) -> str:
    day = dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc)
    return f"{day:%y}{MONTHS[day.month - 1]}{day:%d}"


def _reindex(trade: Trade, index: int) -> Trade:
    return dataclasses.replace(trade, index=index)
