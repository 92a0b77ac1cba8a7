import time

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate

from orgs.models import Organization
from usage.models import DailyUsage, RequestLog

MODELS = ["gpt-5.5", "gpt-5.4-mini", "deepseek-v4-flash", "claude-sonnet-4-6", "gemini-3.5-flash"]


class Command(BaseCommand):
    help = "Seed synthetic request logs (PostgreSQL) to measure the usage pages on large data."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="Organization slug.")
        parser.add_argument("--rows", type=int, default=1_000_000)
        parser.add_argument("--days", type=int, default=90)

    def handle(self, *args, org, rows, days, **opts):
        organization = Organization.objects.filter(slug=org).first()
        if organization is None:
            raise CommandError(f"No organization with slug {org!r}.")
        if connection.vendor != "postgresql":
            raise CommandError("Seeding this much data needs PostgreSQL (DATABASE_URL).")
        started = time.monotonic()
        models = "ARRAY[" + ",".join(f"'{m}'" for m in MODELS) + "]"
        with transaction.atomic(), connection.cursor() as cursor:
            # One set-based statement: a million rows in seconds, spread over the period.
            cursor.execute(f"""
                INSERT INTO {RequestLog._meta.db_table}
                  (organization_id, request_id, endpoint, model, provider, upstream_model, status, latency_ms,
                   input_tokens, cached_tokens, cache_write_tokens, output_tokens, reasoning_tokens, unit, units,
                   cost, uncollected, error_type, stream, attempts, created_at)
                SELECT %s, 'req_seed_' || md5(random()::text || g), 'chat.completions',
                       ({models})[1 + g %% 5], 'seed', ({models})[1 + g %% 5],
                       CASE WHEN g %% 50 = 0 THEN 502 WHEN g %% 97 = 0 THEN 429 ELSE 200 END,
                       50 + (random() * 3000)::int, 100 + g %% 4000, g %% 300, 0, 10 + g %% 900, 0, '', 0,
                       (random() * 200000)::bigint, 0, '', g %% 3 = 0, '[]'::jsonb,
                       now() - (random() * %s * interval '1 day')
                FROM generate_series(1, %s) AS g""", [organization.pk, days, rows])
            DailyUsage.objects.filter(organization=organization).delete()
            totals = (RequestLog.objects.filter(organization=organization).annotate(day=TruncDate("created_at"))
                      .values("model", "day").annotate(
                          requests=Count("id"), errors=Count("id", filter=Q(status__gte=400)),
                          input_tokens=Sum("input_tokens"), cached_tokens=Sum("cached_tokens"),
                          cache_write_tokens=Sum("cache_write_tokens"), output_tokens=Sum("output_tokens"),
                          reasoning_tokens=Sum("reasoning_tokens"), cost=Sum("cost")))
            DailyUsage.objects.bulk_create(DailyUsage(organization=organization, **row) for row in totals)
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {RequestLog._meta.db_table}")
        self.stdout.write(f"Seeded {rows:,} request logs for {org} in {time.monotonic() - started:.1f} s.")
