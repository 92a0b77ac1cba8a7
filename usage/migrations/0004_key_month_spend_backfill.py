"""Fill each key's month spend from the request logs written before it was kept with every batch."""

from django.db import migrations
from django.db.models import Sum
from django.db.models.functions import TruncMonth


def backfill(apps, schema_editor):
    RequestLog = apps.get_model("usage", "RequestLog")
    KeyMonthSpend = apps.get_model("apikeys", "KeyMonthSpend")
    totals = (RequestLog.objects.filter(api_key__isnull=False, cost__gt=0).annotate(month=TruncMonth("created_at"))
              .values("api_key", "month").annotate(amount=Sum("cost")).order_by())
    KeyMonthSpend.objects.bulk_create(
        [KeyMonthSpend(key_id=row["api_key"], month=row["month"].strftime("%Y-%m"), amount=row["amount"])
         for row in totals.iterator()], batch_size=1000)


class Migration(migrations.Migration):
    dependencies = [("usage", "0003_daily_rollups"), ("apikeys", "0004_key_month_spend")]
    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
