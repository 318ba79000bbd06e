"""`orderbook_delta_packs` partitioned by day, like the tables it packs.

A chunk never crosses an hour boundary (markets/record/packs.py), so it
belongs to the UTC day of its `first_at`. With one partition per day,
`archive` drops a day's chunks with their partition instead of deleting
them: a full-exchange day is about 1.6M chunks and 8 GB of TOAST, whose
DELETE wrote a WAL record per row, left the space to autovacuum, and held
the table's lock for as long. `packs.pack_day()` creates a day's partition
when it first packs it; this migration creates those of the chunks stored.

The table keeps its columns (made LIKE the old one), and the views over
the chunks are recreated as 0008 wrote them (a view follows the table it
was made on, not its name).
"""

import importlib

from django.db import migrations

_0008 = importlib.import_module("markets.migrations.0008_delta_packs")

INDEX = ("CREATE INDEX orderbook_delta_packs_range ON orderbook_delta_packs "
         "(market_id, first_at, last_at) INCLUDE (deltas);")

VIEWS = _0008.PACKED + f""";
CREATE VIEW orderbook_deltas AS
SELECT {_0008.COLUMNS} FROM orderbook_deltas_loose
UNION ALL
SELECT {_0008.COLUMNS} FROM orderbook_deltas_packed;
"""

SWAP_OUT = """
DROP VIEW orderbook_deltas;
DROP VIEW orderbook_deltas_packed;
ALTER TABLE orderbook_delta_packs RENAME TO orderbook_delta_packs_old;
ALTER INDEX orderbook_delta_packs_range RENAME TO orderbook_delta_packs_old_range;
"""

SWAP_IN = """
INSERT INTO orderbook_delta_packs SELECT * FROM orderbook_delta_packs_old
ORDER BY market_id, first_at;
DROP TABLE orderbook_delta_packs_old;
""" + VIEWS

FORWARD = SWAP_OUT + f"""
CREATE TABLE orderbook_delta_packs (LIKE orderbook_delta_packs_old) PARTITION BY RANGE (first_at);
{INDEX}
DO $$
DECLARE
    day date;
BEGIN
    FOR day IN SELECT DISTINCT (first_at AT TIME ZONE 'UTC')::date
               FROM orderbook_delta_packs_old LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF orderbook_delta_packs '
                       'FOR VALUES FROM (%L) TO (%L)',
                       'orderbook_delta_packs_' || to_char(day, 'YYYY_MM_DD'),
                       day::timestamp AT TIME ZONE 'UTC',
                       (day + 1)::timestamp AT TIME ZONE 'UTC');
    END LOOP;
END $$;
""" + SWAP_IN

BACKWARD = SWAP_OUT + f"""
CREATE TABLE orderbook_delta_packs (LIKE orderbook_delta_packs_old);
{INDEX}
""" + SWAP_IN


class Migration(migrations.Migration):

    dependencies = [
        ('markets', '0008_delta_packs'),
    ]

    operations = [
        migrations.RunSQL(FORWARD, BACKWARD),
    ]
