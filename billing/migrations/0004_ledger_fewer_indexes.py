# LedgerEntry keeps only the indexes its queries use: every call's charge and log pays for each one.
# The unique constraint goes in first, so that uniqueness never lapses.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('billing', '0003_topup'),
    ]

    operations = [
        migrations.AddConstraint(
            model_name='ledgerentry',
            constraint=models.UniqueConstraint(fields=('idempotency_key',), name='ledger_idempotency_key_unique'),
        ),
        migrations.AlterField(
            model_name='ledgerentry',
            name='idempotency_key',
            field=models.CharField(max_length=200),
        ),
        migrations.AlterField(
            model_name='ledgerentry',
            name='wallet',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='entries', to='billing.wallet'),
        ),
    ]
