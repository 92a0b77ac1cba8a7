"""Batch SQL: the metering flush's writes, and deletions of old rows a batch at a time.

The flush's writes are a few statements per batch instead of the ORM's per-row model instances and
field preparation. Table and column names come from Django's ``_meta``; values must already be adapted
for the connection (``connection.ops.adapt_*_value``). PostgreSQL and SQLite (the embedded default) are
both supported.
"""

import json
from collections.abc import Sequence

from django.db import connection, models
from django.db.models import QuerySet


def existing_values(model: type[models.Model], field: str, values: Sequence[str]) -> set[str]:
    """Which of ``values`` the column already holds: one query, the values as one JSON array parameter."""
    if not values:
        return set()
    meta = model._meta
    column = meta.get_field(field).column
    listed = ("SELECT json_array_elements_text(%s::json)" if connection.vendor == "postgresql"
              else "SELECT value FROM json_each(%s)")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {meta.db_table} WHERE {column} IN ({listed})",
                       [json.dumps(list(values))])
        return {row[0] for row in cursor.fetchall()}


def insert_rows(model: type[models.Model], fields: Sequence[str], rows: Sequence[tuple]) -> None:
    """Insert many rows. COPY on PostgreSQL: psycopg binds a many-row INSERT's placeholders client-side at
    about 1 µs of Python each; executemany on SQLite, which runs in process anyway."""
    if not rows:
        return
    meta = model._meta
    columns = ", ".join(meta.get_field(name).column for name in fields)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with connection.wrap_database_errors, cursor.copy(f"COPY {meta.db_table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            cursor.executemany(f"INSERT INTO {meta.db_table} ({columns}) VALUES ({', '.join(['%s'] * len(fields))})",
                               rows)


def update_by_pk(model: type[models.Model], field: str, values: Sequence[tuple[int, object]]) -> None:
    """Set ``field`` per primary key in one statement per batch (like QuerySet.update(): no auto_now)."""
    if not values:
        return
    meta = model._meta
    target = meta.get_field(field)
    pk, column = meta.pk.column, target.column
    step = connection.ops.bulk_batch_size([meta.pk, target, meta.pk], values)  # SQLite's parameter limit
    with connection.cursor() as cursor:
        for chunk in (values[i:i + step] for i in range(0, len(values), step)):
            cursor.execute(f"UPDATE {meta.db_table} SET {column} = CASE {pk} "
                           f"{' '.join(['WHEN %s THEN %s'] * len(chunk))} END "
                           f"WHERE {pk} IN ({', '.join(['%s'] * len(chunk))})",
                           [*(v for pair in chunk for v in pair), *(key for key, _ in chunk)])


def delete_in_batches(rows: QuerySet, *, batch_size: int = 10_000) -> int:
    """Delete ``rows`` a batch of primary keys at a time, so a large purge never holds one long lock."""
    deleted = 0
    while ids := list(rows.values_list("pk", flat=True)[:batch_size]):
        deleted += rows.model.objects.filter(pk__in=ids).delete()[0]
    return deleted
