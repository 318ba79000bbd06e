"""The domain's tables.

`hierarchy` holds the slowly changing Kalshi objects (series -> event ->
market, and settlements); `timeseries` holds the high-volume, time-partitioned
record of what happened (order-book deltas and snapshots, trades) and where
that record has holes (sequence gaps).
"""

from .bars import TradeBar
from .collection import BackfillStatus, CollectorRun, TradeBackfill
from .fields import CountField, PriceField
from .hierarchy import Event, Market, Series, Settlement, SettlementResult
from .lake import LakeDay, LakeMarketDay
from .timeseries import (
    BookSide,
    GapReason,
    LifecycleEvent,
    DeltaSide,
    OrderbookDelta,
    OrderbookSnapshot,
    RecordMarket,
    SequenceGap,
    SnapshotSource,
    StoredDelta,
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
    "DeltaSide",
    "Event",
    "LakeDay",
    "LakeMarketDay",
    "Market",
    "OrderbookDelta",
    "OrderbookSnapshot",
    "PriceField",
    "RecordMarket",
    "SequenceGap",
    "Series",
    "Settlement",
    "SettlementResult",
    "SnapshotSource",
    "StoredDelta",
    "Trade",
    "TradeBar",
]
