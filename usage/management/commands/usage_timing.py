import statistics
import time

from django.core.management.base import BaseCommand, CommandError
from django.test import Client

from orgs.models import Membership

TARGETS = [
    ("GET /usage (page)", "/usage?days=30"),
    ("GET /usage?days=90", "/usage?days=90"),
    ("GET /usage/logs?model=… (filter)", "/usage/logs?days=30&model=gpt-5.5&status=errors"),
    ("GET /api/api-usage?days=30&limit=1000", "/api/api-usage?days=30&limit=1000"),
    ("GET /api/api-usage?days=90&sort=cost", "/api/api-usage?days=90&sort=cost&limit=100"),
]


class Command(BaseCommand):
    help = "Time the usage page and API for an organization through Django's full request path."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True)
        parser.add_argument("--repeat", type=int, default=7)

    def handle(self, *args, org, repeat, **opts):
        membership = Membership.objects.filter(organization__slug=org).select_related("user").first()
        if membership is None:
            raise CommandError(f"No member in {org!r}.")
        client = Client(HTTP_X_ORGANIZATION=org)
        client.force_login(membership.user)
        self.stdout.write(f"{'request':45} {'median ms':>10} {'max ms':>8}")
        for label, url in TARGETS:
            times = []
            for _ in range(repeat + 1):  # the first warms caches and is not counted
                started = time.perf_counter()
                resp = client.get(url + f"&org={org}")
                times.append((time.perf_counter() - started) * 1000)
                if resp.status_code != 200:
                    raise CommandError(f"{url} answered {resp.status_code}")
            self.stdout.write(f"{label:45} {statistics.median(times[1:]):10.1f} {max(times[1:]):8.1f}")
