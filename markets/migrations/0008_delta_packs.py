"""Closed days' deltas packed several to a row: `orderbook_delta_packs`.

One row per delta cannot go below about 120 bytes a delta in PostgreSQL (a
tuple header, a line pointer and a key entry each: docs/storage.md). Once a
UTC day has closed, `archive` moves each market's deltas of the day into
chunks (markets/record/packs.py): one row per chunk, its deltas' columns as
arrays in replay order, TOAST-compressed. Readers keep the view
`orderbook_deltas`, now the loose rows and the unpacked chunks together;
reads of a time range go through `orderbook_deltas_loose` and
`orderbook_deltas_packed` so that only the chunks that overlap the range
are unpacked (markets/record/reads.py).

Backward: every chunk is unpacked into its day's partition of
`orderbook_delta_rows` again, and the views are those of 0007.
"""

from django.db import migrations


# Kept here, not imported: a migration must not change when the code does.
def _record_columns(alias: str) -> str:
    """A stored delta's columns (`alias`: its relation) as readers see them (0007)."""
    return f"""m.ticker AS market_ticker, {alias}.received_at, {alias}.session_id, {alias}.sid,
       {alias}.seq, CASE {alias}.side WHEN 1 THEN 'yes' WHEN 2 THEN 'no' END AS side,
       ({alias}.price * 0.0001)::numeric(10, 4) AS price,
       ({alias}.delta * 0.01)::numeric(18, 2) AS delta,
       {alias}.ts"""


def _loose(view: str) -> str:
    return f"""
CREATE VIEW {view} AS
SELECT {_record_columns('d')}, d.market_id
FROM orderbook_delta_rows d JOIN record_markets m ON m.id = d.market_id
"""


PACKED = f"""
CREATE VIEW orderbook_deltas_packed AS
SELECT {_record_columns('u')}, p.market_id, p.first_at AS pack_first_at, p.last_at AS pack_last_at
FROM orderbook_delta_packs p
JOIN record_markets m ON m.id = p.market_id
CROSS JOIN LATERAL unnest(p.received_at, p.session_id, p.sid, p.seq, p.side, p.price, p.delta,
                          p.ts) AS u(received_at, session_id, sid, seq, side, price, delta, ts)
"""

COLUMNS = "market_ticker, received_at, session_id, sid, seq, side, price, delta, ts, market_id"

FORWARD = """
CREATE TABLE orderbook_delta_packs (
    first_at timestamptz NOT NULL,
    last_at timestamptz NOT NULL,
    market_id integer NOT NULL,
    deltas integer NOT NULL,
    received_at timestamptz[] NOT NULL,
    session_id bigint[] NOT NULL,
    seq bigint[] NOT NULL,
    delta bigint[] NOT NULL,
    ts timestamptz[] NOT NULL,
    sid integer[] NOT NULL,
    price integer[] NOT NULL,
    side smallint[] NOT NULL
);
CREATE INDEX orderbook_delta_packs_range ON orderbook_delta_packs (market_id, first_at, last_at)
    INCLUDE (deltas);
DROP VIEW orderbook_deltas;
""" + _loose("orderbook_deltas_loose") + ";" + PACKED + f""";
CREATE VIEW orderbook_deltas AS
SELECT {COLUMNS} FROM orderbook_deltas_loose
UNION ALL
SELECT {COLUMNS} FROM orderbook_deltas_packed;
"""

BACKWARD = """
INSERT INTO orderbook_delta_rows (received_at, session_id, seq, delta, ts, market_id, sid, price,
                                  side)
SELECT u.received_at, u.session_id, u.seq, u.delta, u.ts, p.market_id, u.sid, u.price, u.side
FROM orderbook_delta_packs p
CROSS JOIN LATERAL unnest(p.received_at, p.session_id, p.seq, p.delta, p.ts, p.sid, p.price,
                          p.side) AS u(received_at, session_id, seq, delta, ts, sid, price, side)
ORDER BY u.received_at, u.session_id, u.seq;
DROP VIEW orderbook_deltas;
DROP VIEW orderbook_deltas_packed;
DROP VIEW orderbook_deltas_loose;
DROP TABLE orderbook_delta_packs;
""" + _loose("orderbook_deltas") + ";"


class Migration(migrations.Migration):

    dependencies = [
        ('markets', '0007_compact_deltas'),
    ]

    operations = [
        migrations.RunSQL(FORWARD, BACKWARD),
    ]
