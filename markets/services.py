"""Writes of the reference tables: series, events, markets and settlements.

Each service takes Kalshi's own objects (REST `Series`, `EventData`, `Market`,
or a WebSocket lifecycle payload) and stores them exactly: prices and strikes
as Decimals, times as aware datetimes, and the raw object in `metadata` so
that nothing Kalshi sent is lost even when a field has no column yet. Every
service is idempotent: calling it again with the same object changes nothing,
and a partial object (a lifecycle message) only updates the fields it carries.

The collector, the trade backfill and the admin all write through here.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from decimal import Decimal

from django.db import connection, transaction

from .fixedpoint import FixedPointError, parse_price, to_decimal
from .models import Event, Market, Series, Settlement

logger = logging.getLogger(__name__)

# Lifecycle event types that move a market's status (open and close emit
# nothing on Kalshi's side; see ../shared PROTOCOL §4.4).
LIFECYCLE_STATUS = {
    "activated": "active",
    "deactivated": "inactive",
    "determined": "determined",
    "settled": "finalized",
}


# -- series ------------------------------------------------------------------


def series_upsert(*, data: dict) -> Series:
    """Store a REST `Series` object (GET /series, /series/{ticker})."""
    ticker = data["ticker"]
    defaults = {
        "title": data.get("title") or "",
        "frequency": data.get("frequency") or "",
        "category": data.get("category") or "",
        "tags": list(data.get("tags") or []),
        "settlement_sources": list(data.get("settlement_sources") or []),
        "contract_url": data.get("contract_url") or "",
        "fee_type": data.get("fee_type") or "",
        "fee_multiplier": _decimal_or_none(data.get("fee_multiplier")),
        "metadata": data,
    }
    series, _ = Series.objects.update_or_create(ticker=ticker, defaults=defaults)
    return series


# -- events ------------------------------------------------------------------


def event_upsert(*, data: dict) -> Event:
    """Store a REST `EventData` object or a WebSocket `event_lifecycle` payload.

    REST says `sub_title` and gives `strike_date` as RFC 3339; the WebSocket
    says `subtitle` and gives Unix seconds. A WebSocket payload never replaces
    the REST object kept in `metadata`; it is kept beside it.
    """
    event_ticker = data["event_ticker"]
    from_ws = "subtitle" in data and "sub_title" not in data
    fields = {
        "series_ticker": data.get("series_ticker"),
        "title": data.get("title"),
        "sub_title": data.get("sub_title", data.get("subtitle")),
        "category": data.get("category"),
        "mutually_exclusive": data.get("mutually_exclusive"),
        "collateral_return_type": data.get("collateral_return_type"),
        "strike_date": _time_or_none(data.get("strike_date")),
        "strike_period": data.get("strike_period"),
    }
    fields = {k: v for k, v in fields.items() if v is not None}
    with transaction.atomic():
        event = Event.objects.select_for_update().filter(event_ticker=event_ticker).first()
        if event is None:
            event = Event(event_ticker=event_ticker)
        for name, value in fields.items():
            setattr(event, name, value)
        if from_ws:
            event.metadata = {**(event.metadata or {}), "event_lifecycle": data}
        else:
            nested = {k: v for k, v in data.items() if k != "markets"}
            lifecycle = (event.metadata or {}).get("event_lifecycle")
            event.metadata = nested if lifecycle is None else {**nested, "event_lifecycle": lifecycle}
        event.save()
        if event.series_ticker:
            # Markets learn their series from their event (REST Market has none).
            Market.objects.filter(event_ticker=event_ticker, series_ticker="").update(
                series_ticker=event.series_ticker
            )
    return event


# -- markets -----------------------------------------------------------------


def market_upsert(*, data: dict) -> Market:
    """Store a REST `Market` object (GET /markets, /markets/{ticker})."""
    return _market_update(data["ticker"], _market_fields(data))


def markets_upsert(*, markets: list[dict]) -> int:
    """Store many REST `Market` objects at once; returns how many.

    What `market_upsert` does for each, in one INSERT ... ON CONFLICT per
    thousand and one UPDATE for the series: the collector lists every open
    market at start (tens of thousands on Kalshi), and one row lock and save
    each took 5 ms, 25 s for 5,000 markets before the first subscribe.
    """
    by_ticker = {m["ticker"]: m for m in markets if m.get("ticker")}
    if not by_ticker:
        return 0
    rows = [Market(ticker=ticker, **_market_fields(data)) for ticker, data in by_ticker.items()]
    update = [*_market_fields({"ticker": ""}).keys(), "updated_at"]
    with transaction.atomic():
        Market.objects.bulk_create(rows, batch_size=1000, update_conflicts=True,
                                   unique_fields=["ticker"], update_fields=update)
        with connection.cursor() as cursor:
            # A market that has no series yet takes its event's, once both are known.
            cursor.execute(
                "UPDATE markets SET series_ticker = e.series_ticker FROM events e "
                "WHERE markets.series_ticker = '' AND markets.event_ticker = e.event_ticker "
                "AND e.series_ticker <> '' AND markets.ticker = ANY(%s)",
                [list(by_ticker)],
            )
    return len(rows)


def _market_fields(data: dict) -> dict:
    """The columns of a REST `Market` object (the raw object in `metadata`)."""
    ticker = data["ticker"]
    return {
        "event_ticker": data.get("event_ticker") or "",
        "market_type": data.get("market_type") or "binary",
        "title": data.get("title") or "",
        "yes_sub_title": data.get("yes_sub_title") or "",
        "no_sub_title": data.get("no_sub_title") or "",
        "status": data.get("status") or "",
        "open_time": _time_or_none(data.get("open_time")),
        "close_time": _time_or_none(data.get("close_time")),
        "expected_expiration_time": _time_or_none(data.get("expected_expiration_time")),
        "expiration_time": _time_or_none(
            data.get("latest_expiration_time") or data.get("expiration_time")
        ),
        "price_level_structure": data.get("price_level_structure") or "",
        "price_ranges": list(data.get("price_ranges") or []),
        "strike_type": data.get("strike_type") or "",
        "floor_strike": _decimal_or_none(data.get("floor_strike")),
        "cap_strike": _decimal_or_none(data.get("cap_strike")),
        "custom_strike": data.get("custom_strike"),
        "can_close_early": data.get("can_close_early"),
        "rules_primary": data.get("rules_primary") or "",
        "rules_secondary": data.get("rules_secondary") or "",
        "result": data.get("result") or "",
        "settlement_value": _price_or_none(data.get("settlement_value_dollars"), ticker),
        "metadata": data,
    }


def market_upsert_from_lifecycle(*, payload: dict) -> Market:
    """Apply one `market_lifecycle_v2` payload to the market's row.

    Only the fields the message carries change; a market first heard of
    through `created` gets a row at once (REST fills in the rest later).
    """
    ticker = payload["market_ticker"]
    event_type = payload.get("event_type", "")
    fields: dict = {}
    meta = payload.get("additional_metadata") or {}
    for name in ("title", "yes_sub_title", "no_sub_title", "rules_primary", "rules_secondary"):
        if meta.get(name) is not None:
            fields[name] = meta[name]
    if meta.get("event_ticker"):
        fields["event_ticker"] = meta["event_ticker"]
    if meta.get("can_close_early") is not None:
        fields["can_close_early"] = meta["can_close_early"]
    if meta.get("expected_expiration_ts") is not None:
        fields["expected_expiration_time"] = _time_or_none(meta["expected_expiration_ts"])
    strikes = {**meta, **payload}
    if strikes.get("strike_type") is not None:
        fields["strike_type"] = strikes["strike_type"]
    for name in ("floor_strike", "cap_strike"):
        if strikes.get(name) is not None:
            fields[name] = _decimal_or_none(strikes[name])
    if strikes.get("custom_strike") is not None:
        fields["custom_strike"] = strikes["custom_strike"]
    if payload.get("yes_sub_title") is not None:
        fields["yes_sub_title"] = payload["yes_sub_title"]
    if payload.get("open_ts") is not None:
        fields["open_time"] = _time_or_none(payload["open_ts"])
    if payload.get("close_ts") is not None:
        fields["close_time"] = _time_or_none(payload["close_ts"])
    if payload.get("price_level_structure") is not None:
        fields["price_level_structure"] = payload["price_level_structure"]
    if payload.get("price_ranges") is not None:
        fields["price_ranges"] = list(payload["price_ranges"])
    if event_type == "determined":
        if payload.get("result"):
            fields["result"] = payload["result"]
        if payload.get("settlement_value") not in (None, ""):
            fields["settlement_value"] = _price_or_none(payload["settlement_value"], ticker)
    if event_type in LIFECYCLE_STATUS:
        fields["status"] = LIFECYCLE_STATUS[event_type]
    created = event_type == "created"
    return _market_update(
        ticker, fields,
        status="initialized" if created else "",
        metadata={"lifecycle_created": payload} if created else {},
    )


def _market_update(ticker: str, fields: dict, **new_row) -> Market:
    """Set `fields` on the market's row under a row lock; create it (with `new_row`) if absent.

    A market that has no series yet takes its event's, once both are known.
    """
    with transaction.atomic():
        market = Market.objects.select_for_update().filter(ticker=ticker).first()
        if market is None:
            market = Market(ticker=ticker, **new_row)
        for name, value in fields.items():
            setattr(market, name, value)
        if not market.series_ticker and market.event_ticker:
            market.series_ticker = (
                Event.objects.filter(event_ticker=market.event_ticker)
                .values_list("series_ticker", flat=True)
                .first()
                or ""
            )
        market.save()
    return market


# -- settlements ---------------------------------------------------------------


def settlement_record(
    *,
    market_ticker: str,
    result: str,
    settlement_value: Decimal | str | None = None,
    determined_at: datetime | None = None,
    settled_at: datetime | None = None,
    source: str = "lifecycle",
    event_ticker: str = "",
    metadata: dict | None = None,
) -> Settlement:
    """Record (or complete) how a market settled.

    Determination and settlement arrive as two messages, possibly out of
    order or twice: each call fills in what it knows and never erases what
    an earlier call stored. The market's own row gets the result too.
    """
    value = _price_or_none(settlement_value, market_ticker)
    with transaction.atomic():
        settlement = (
            Settlement.objects.select_for_update().filter(market_ticker=market_ticker).first()
        )
        if settlement is None:
            settlement = Settlement(market_ticker=market_ticker, source=source)
        if result:
            settlement.result = result
        if value is not None:
            settlement.settlement_value = value
        if determined_at is not None:
            settlement.determined_at = determined_at
        if settled_at is not None:
            settlement.settled_at = settled_at
        if event_ticker:
            settlement.event_ticker = event_ticker
        elif not settlement.event_ticker:
            settlement.event_ticker = (
                Market.objects.filter(ticker=market_ticker)
                .values_list("event_ticker", flat=True)
                .first()
                or ""
            )
        settlement.source = source
        if metadata:
            settlement.metadata = {**(settlement.metadata or {}), **metadata}
        settlement.save()

        market_fields = {}
        if settlement.result:
            market_fields["result"] = settlement.result
        if settlement.settlement_value is not None:
            market_fields["settlement_value"] = settlement.settlement_value
        if settlement.settled_at is not None:
            market_fields["status"] = "finalized"
        if market_fields:
            Market.objects.filter(ticker=market_ticker).update(**market_fields)
    return settlement


# -- parsing helpers -------------------------------------------------------------


def parse_time(value) -> datetime | None:
    """An aware UTC datetime from RFC 3339 text, Unix seconds, or None/''."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=timezone.utc)
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return datetime.fromtimestamp(int(text), tz=timezone.utc)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


_time_or_none = parse_time


def _decimal_or_none(value) -> Decimal | None:
    if value in (None, ""):
        return None
    return to_decimal(value)


def _price_or_none(value, ticker: str) -> Decimal | None:
    """A dollar price, or None when absent or finer than we store (the raw object keeps it)."""
    if value in (None, ""):
        return None
    try:
        return parse_price(value)
    except FixedPointError:
        logger.warning("market=%s price %r is finer than stored; kept in metadata only", ticker, value)
        return None
