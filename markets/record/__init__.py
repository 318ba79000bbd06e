"""The high-volume record: order-book deltas and snapshots, trades, lifecycle, gaps.

`schema` describes each table once (row shape, partition day, replay order,
COPY types, journal decoding); everything that moves record rows uses it.
"""
