"""Records to Arrow, pandas and Polars, with exact types.

Prices become `decimal128(10, 4)` and counts `decimal128(18, 2)` (the
server's own precision and scale: no float anywhere), times
`timestamp[us, UTC]`, days `date32`; book sides (replay snapshots) are
`list<struct<price, size>>` as in the day files. Other columns are left to
Arrow's inference; a column Arrow cannot infer (e.g. free-form JSON payloads
of varying shape) is kept as JSON text.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Iterable

from ._convert import (
    COUNT_FIELDS,
    COUNT_PRECISION,
    COUNT_SCALE,
    DATE_FIELDS,
    LEVEL_LIST_FIELDS,
    PRICE_FIELDS,
    PRICE_PRECISION,
    PRICE_SCALE,
    TIME_FIELDS,
)

if TYPE_CHECKING:
    import pandas
    import polars
    import pyarrow


def _pyarrow() -> Any:
    try:
        import pyarrow
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "This needs pyarrow: pip install 'kalshi-data-client[pandas]' "
            "(or [polars], or [arrow])") from exc
    return pyarrow


def _column_type(pa: Any, name: str, values: list[Any]) -> Any:
    if name in PRICE_FIELDS:
        return pa.decimal128(PRICE_PRECISION, PRICE_SCALE)
    if name in COUNT_FIELDS:
        return pa.decimal128(COUNT_PRECISION, COUNT_SCALE)
    if name in TIME_FIELDS and all(v is None or hasattr(v, "tzinfo") for v in values):
        return pa.timestamp("us", tz="UTC")
    if name in DATE_FIELDS:
        return pa.date32()
    if name in LEVEL_LIST_FIELDS and any(isinstance(v, list) for v in values):
        return pa.list_(pa.struct([
            ("price", pa.decimal128(PRICE_PRECISION, PRICE_SCALE)),
            ("size", pa.decimal128(COUNT_PRECISION, COUNT_SCALE)),
        ]))
    return None


def _column(pa: Any, name: str, values: list[Any]) -> Any:
    kind = _column_type(pa, name, values)
    if name in LEVEL_LIST_FIELDS and kind is not None:
        values = [None if v is None else [{"price": p, "size": s} for p, s in v]
                  for v in values]
    try:
        return pa.array(values, type=kind)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else json.dumps(v, default=str) for v in values],
                        type=pa.string())


def records_to_arrow(records: Iterable[dict[str, Any]]) -> "pyarrow.Table":
    """An Arrow table of the records; columns in order of first appearance."""
    pa = _pyarrow()
    rows = list(records)
    names: dict[str, None] = {}
    for row in rows:
        for key in row:
            names.setdefault(key, None)
    columns = {name: _column(pa, name, [row.get(name) for row in rows]) for name in names}
    return pa.table(columns)


class Batch(list[dict[str, Any]]):
    """A list of records (dicts with Decimal and datetime values) that converts to frames."""

    def to_arrow(self) -> "pyarrow.Table":
        return records_to_arrow(self)

    def to_pandas(self) -> "pandas.DataFrame":
        """A DataFrame: Decimal objects for prices and sizes, `datetime64[us, UTC]` times."""
        return self.to_arrow().to_pandas()

    def to_polars(self) -> "polars.DataFrame":
        """A Polars DataFrame: `pl.Decimal` prices and sizes, `Datetime(us, UTC)` times."""
        import polars

        return polars.from_arrow(self.to_arrow())
