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
    table = DailyUsage._meta.db_table
    columns = ("organization_id", "model", "day", *COUNTERS)
    # Plain SQL: an increment on conflict (Django's upsert can only overwrite). Valid on PostgreSQL and SQLite.
    sql = (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))}) "
           f"ON CONFLICT (organization_id, model, day) DO UPDATE SET "
           + ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in COUNTERS))
    with connection.cursor() as cursor:
        cursor.executemany(sql, [(*key, *values) for key, values in sorted(totals.items())])
