# RequestLog keeps only the indexes its queries use: every call's charge and log pays for each one.
# The unique constraint goes in first, so that uniqueness never lapses.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('apikeys', '0004_key_month_spend'),
        ('orgs', '0009_alter_auditevent_action'),
        ('usage', '0005_request_log_units'),
    ]

    operations = [
        migrations.AddConstraint(
            model_name='requestlog',
            constraint=models.UniqueConstraint(fields=('request_id',), name='log_request_id_unique'),
        ),
        migrations.AlterField(
            model_name='requestlog',
            name='api_key',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='request_logs', to='apikeys.apikey'),
        ),
        migrations.AlterField(
            model_name='requestlog',
            name='organization',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='request_logs', to='orgs.organization'),
        ),
        migrations.AlterField(
            model_name='requestlog',
            name='request_id',
            field=models.CharField(max_length=64),
        ),
    ]
