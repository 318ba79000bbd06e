"""The domain's tables.

`hierarchy` holds the slowly changing Kalshi objects (series -> event ->
market, and settlements); `timeseries` holds the high-volume, time-partitioned
record of what happened (order-book deltas and snapshots, trades) and where
that record has holes (sequence gaps).
"""

from .collection import BackfillStatus, CollectorRun, TradeBackfill
from .fields import CountField, PriceField
from .hierarchy import Event, Market, Series, Settlement, SettlementResult
from .lake import LakeDay, LakeMarketDay
from .timeseries import (
    BookSide,
    GapReason,
    LifecycleEvent,
    OrderbookDelta,
    OrderbookSnapshot,
    SequenceGap,
    SnapshotSource,
    Trade,
)

__all__ = [
    "BackfillStatus",
    "CollectorRun",
    "TradeBackfill",
    "GapReason",
    "LifecycleEvent",
    "BookSide",
    "CountField",
    "Event",
    "LakeDay",
    "LakeMarketDay",
    "Market",
    "OrderbookDelta",
    "OrderbookSnapshot",
    "PriceField",
    "SequenceGap",
    "Series",
    "Settlement",
    "SettlementResult",
    "SnapshotSource",
    "Trade",
]
