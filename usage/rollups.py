"""Incremental daily rollups: one upsert per (organization, model, day) touched by a batch of calls."""

from collections import defaultdict

from django.db import connection

from usage.models import DailyUsage

COUNTERS = ("requests", "errors", "input_tokens", "cached_tokens", "cache_write_tokens", "output_tokens",
            "reasoning_tokens", "cost")


def rollups_add(records) -> None:
    """Add a batch of CallRecords to their days' totals (inside the caller's transaction)."""
    totals: dict[tuple, list[int]] = defaultdict(lambda: [0] * len(COUNTERS))
    for r in records:
        row = totals[(r.organization_id, r.model, r.created_at.date())]
        u = r.usage
        for i, value in enumerate((1, int(r.status >= 400), u.input, u.cached_read, u.cache_write, u.output,
                                   u.reasoning, r.cost)):
            row[i] += value
    if not totals:
        return
    meta, adapt_date = DailyUsage._meta, connection.ops.adapt_datefield_value
    keys = [meta.get_field(name).column for name in ("organization", "model", "day")]
    counters = [meta.get_field(name).column for name in COUNTERS]
    # Plain SQL: an increment on conflict (Django's upsert can only overwrite); valid on PostgreSQL and
    # SQLite. Sorted, so concurrent batches lock the rows they share in the same order.
    sql = (f"INSERT INTO {meta.db_table} ({', '.join(keys + counters)}) "
           f"VALUES ({', '.join(['%s'] * (len(keys) + len(counters)))}) "
           f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET "
           + ", ".join(f"{c} = {meta.db_table}.{c} + excluded.{c}" for c in counters))
    with connection.cursor() as cursor:
        cursor.executemany(sql, [(org_id, model, adapt_date(day), *values)
                                 for (org_id, model, day), values in sorted(totals.items())])
