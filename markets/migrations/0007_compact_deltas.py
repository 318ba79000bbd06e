"""Deltas stored compactly: a market id, fixed-point integers, a three-column key.

The delta rows were about 241 bytes each in PostgreSQL (heap and key), most of
it the ticker's text, written in every row and again in the key
(docs/storage.md, bench/row_layout_bench.py). From here on they live in
`orderbook_delta_rows` (markets/models/timeseries.py, StoredDelta), and
`orderbook_deltas` becomes a view that gives every reader the same columns and
values as before: the ticker, prices and sizes as exact decimals, the side's
name. Writers convert in markets/record/compact.py.

Existing rows move in place, partition by partition (same days, same bounds),
in receive order so that the heap keeps the order the collector writes in.
"""

import psqlextra.backend.migrations.operations.create_partitioned_model
import psqlextra.manager.manager
import psqlextra.models.partitioned
import psqlextra.types
from django.db import migrations, models

# Kept here, not imported: a migration must not change when the code does.
VIEW = """
CREATE VIEW orderbook_deltas AS
SELECT m.ticker AS market_ticker, d.received_at, d.session_id, d.sid, d.seq,
       CASE d.side WHEN 1 THEN 'yes' WHEN 2 THEN 'no' END AS side,
       (d.price * 0.0001)::numeric(10, 4) AS price,
       (d.delta * 0.01)::numeric(18, 2) AS delta,
       d.ts, d.market_id
FROM orderbook_delta_rows d JOIN record_markets m ON m.id = d.market_id
"""


def _move_partitions(source: str, target: str, insert: str) -> str:
    """A DO block: for each partition of `source`, a partition of `target` with
    the same bounds, name suffix and comment (psqlextra's mark), filled by
    `insert` (SQL with %I for the new partition, then the old one)."""
    return f"""
DO $$
DECLARE p record;
DECLARE name text;
BEGIN
    FOR p IN
        SELECT child.relname, pg_get_expr(child.relpartbound, child.oid) AS bound,
               obj_description(child.oid, 'pg_class') AS comment
        FROM pg_inherits
        JOIN pg_class parent ON parent.oid = pg_inherits.inhparent
        JOIN pg_class child ON child.oid = pg_inherits.inhrelid
        WHERE parent.relname = '{source}'
    LOOP
        name := '{target}' || substr(p.relname, length('{source}') + 1);
        EXECUTE format('CREATE TABLE %I PARTITION OF {target} %s', name, p.bound);
        IF p.comment IS NOT NULL THEN
            EXECUTE format('COMMENT ON TABLE %I IS %L', name, p.comment);
        END IF;
        EXECUTE format('{insert}', name, p.relname);
    END LOOP;
END $$;
"""


FORWARD = """
CREATE TABLE orderbook_delta_rows (
    received_at timestamptz NOT NULL,
    session_id bigint NOT NULL,
    seq bigint NOT NULL,
    delta bigint NOT NULL,
    ts timestamptz NULL,
    market_id integer NOT NULL,
    sid integer NOT NULL,
    price integer NOT NULL,
    side smallint NOT NULL,
    PRIMARY KEY (market_id, received_at, session_id)
) PARTITION BY RANGE (received_at);

INSERT INTO record_markets (ticker)
SELECT DISTINCT market_ticker FROM orderbook_deltas ORDER BY 1;
""" + _move_partitions(
    "orderbook_deltas", "orderbook_delta_rows",
    "INSERT INTO %I (received_at, session_id, seq, delta, ts, market_id, sid, price, side) "
    "SELECT d.received_at, d.session_id, d.seq, (d.delta * 100)::bigint, d.ts, m.id, "
    "d.sid, (d.price * 10000)::integer, CASE d.side WHEN ''yes'' THEN 1 ELSE 2 END "
    "FROM %I d JOIN record_markets m ON m.ticker = d.market_ticker "
    "ORDER BY d.received_at, d.session_id, d.seq ON CONFLICT DO NOTHING",
) + """
DROP TABLE orderbook_deltas;
""" + VIEW

# Back to 0006: the table as 0001 made it, the rows converted back, partition by partition.
BACKWARD = """
DROP VIEW orderbook_deltas;

CREATE TABLE orderbook_deltas (
    market_ticker text NOT NULL,
    received_at timestamptz NOT NULL,
    session_id bigint NOT NULL,
    sid integer NOT NULL,
    seq bigint NOT NULL,
    side text NOT NULL,
    price numeric(10, 4) NOT NULL,
    delta numeric(18, 2) NOT NULL,
    ts timestamptz NULL,
    PRIMARY KEY (market_ticker, received_at, session_id, sid, seq)
) PARTITION BY RANGE (received_at);
""" + _move_partitions(
    "orderbook_delta_rows", "orderbook_deltas",
    "INSERT INTO %I SELECT m.ticker, d.received_at, d.session_id, d.sid, d.seq, "
    "CASE d.side WHEN 1 THEN ''yes'' ELSE ''no'' END, d.price * 0.0001, d.delta * 0.01, d.ts "
    "FROM %I d JOIN record_markets m ON m.id = d.market_id ORDER BY d.received_at",
) + """
DROP TABLE orderbook_delta_rows;
"""


class Migration(migrations.Migration):

    dependencies = [
        ('markets', '0006_trade_bars'),
    ]

    operations = [
        migrations.CreateModel(
            name='RecordMarket',
            fields=[
                ('id', models.AutoField(primary_key=True, serialize=False)),
                ('ticker', models.TextField(unique=True)),
            ],
            options={
                'db_table': 'record_markets',
            },
        ),
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(FORWARD, BACKWARD)],
            state_operations=[
                psqlextra.backend.migrations.operations.create_partitioned_model.PostgresCreatePartitionedModel(
                    name='StoredDelta',
                    fields=[
                        ('pk', models.CompositePrimaryKey('market_id', 'received_at', 'session_id', blank=True, editable=False, primary_key=True, serialize=False)),
                        ('received_at', models.DateTimeField()),
                        ('session_id', models.BigIntegerField()),
                        ('seq', models.BigIntegerField()),
                        ('delta', models.BigIntegerField(help_text='Signed change in resting size, in 1/100 contract.')),
                        ('ts', models.DateTimeField(blank=True, null=True)),
                        ('market_id', models.IntegerField(help_text='RecordMarket.id')),
                        ('sid', models.IntegerField()),
                        ('price', models.IntegerField(help_text='No-leg price in 1/10,000 dollar.')),
                        ('side', models.SmallIntegerField(choices=[(1, 'Yes'), (2, 'No')])),
                    ],
                    options={
                        'db_table': 'orderbook_delta_rows',
                    },
                    partitioning_options={
                        'method': psqlextra.types.PostgresPartitioningMethod['RANGE'],
                        'key': ['received_at'],
                    },
                    bases=(psqlextra.models.partitioned.PostgresPartitionedModel,),
                    managers=[
                        ('objects', psqlextra.manager.manager.PostgresManager()),
                    ],
                ),
                migrations.AlterModelOptions(
                    name='orderbookdelta',
                    options={'managed': False},
                ),
            ],
        ),
    ]
