import csv
import io
import json
import re
import uuid
from datetime import timedelta

import pytest
from django.db.models import Sum
from django.test import Client
from django.utils import timezone

from apikeys.services import api_key_create
from billing.tokens import TokenUsage
from orgs.roles import ADMIN, BILLING, DEVELOPER, OWNER, VIEWER
from orgs.services import user_create
from tests.factories import org_with_member
from usage.models import DailyUsage, RequestLog
from usage.services import CallRecord, call_records_save, request_logs_prune

pytestmark = pytest.mark.django_db


def record(org, *, model="gpt-5.5", cost=1_000, status=200, latency=100, key=None, when=None, **usage) -> CallRecord:
    return CallRecord(
        request_id=f"req_{uuid.uuid4().hex[:24]}", organization_id=org.pk, api_key_id=key.pk if key else None,
        endpoint="chat.completions", model=model, provider="sim", upstream_model=model, status=status,
        latency_ms=latency, usage=TokenUsage(input=usage.get("input", 100), output=usage.get("output", 20)), cost=cost,
        created_at=when or timezone.now(), attempts=[{"provider": "sim", "status": status, "latency_ms": latency}])


@pytest.fixture
def org_with_traffic():
    org, owner = org_with_member(OWNER)
    key, _ = api_key_create(organization=org, name="ci")
    calls = [record(org, model="gpt-5.5", cost=5_000, latency=900, key=key),
             record(org, model="gpt-5.5", cost=3_000, latency=300),
             record(org, model="deepseek-v4-flash", cost=100, latency=50, key=key),
             record(org, model="deepseek-v4-flash", cost=0, status=502, latency=2000),
             record(org, model="gpt-5.5", cost=7_000, when=timezone.now() - timedelta(days=40))]
    call_records_save(records=calls[:3])
    call_records_save(records=calls[3:])  # rollups add up across batches
    return org, owner, key, calls


def client_for(user, org) -> Client:
    client = Client(HTTP_X_ORGANIZATION=org.slug)
    client.force_login(user)
    return client


def test_rollups_equal_the_logs_they_summarise(org_with_traffic):
    org, *_ = org_with_traffic
    for model in ("gpt-5.5", "deepseek-v4-flash"):
        logs = RequestLog.objects.filter(organization=org, model=model)
        rolled = DailyUsage.objects.filter(organization=org, model=model)
        assert rolled.aggregate(c=Sum("cost"))["c"] == logs.aggregate(c=Sum("cost"))["c"]
        assert rolled.aggregate(r=Sum("requests"))["r"] == logs.count()
    assert DailyUsage.objects.get(organization=org, model="deepseek-v4-flash").errors == 1


@pytest.mark.parametrize("role", [OWNER, ADMIN, DEVELOPER, BILLING, VIEWER, None])
def test_every_member_reads_usage_and_outsiders_do_not(org_with_traffic, role):
    org, *_ = org_with_traffic
    if role is None:
        user = user_create(email="outsider@example.test")
    else:
        from orgs.models import Membership

        user = user_create(email=f"{role}@example.test")
        if role != OWNER:
            Membership.objects.create(organization=org, user=user, role=role)
        else:
            user = org.memberships.get(role=OWNER).user
    resp = client_for(user, org).get("/api/api-usage", {"days": 30})
    assert resp.status_code == (404 if role is None else 200)


def test_usage_shape_and_totals(org_with_traffic):
    org, owner, *_ = org_with_traffic
    body = client_for(owner, org).get("/api/api-usage", {"days": 30, "limit": 1000}).json()
    assert body["totals"]["requests"] == 4 and body["totals"]["cost"] == "0.0081" and body["totals"]["errors"] == 1
    assert body["costByModel"] == [{"model": "gpt-5.5", "cost": "0.008", "requests": 2},
                                   {"model": "deepseek-v4-flash", "cost": "0.0001", "requests": 2}]
    assert [r["cost"] for r in body["topExpensiveRequests"]] == ["0.005", "0.003", "0.0001", "0"]
    assert len(body["logs"]) == 4 and len(body["dailyCost"]) == 30
    assert body["dailyCost"][-1]["cost"] == "0.0081"


def test_the_older_call_shows_in_a_longer_period(org_with_traffic):
    org, owner, *_ = org_with_traffic
    assert client_for(owner, org).get("/api/api-usage", {"days": 90}).json()["totals"]["requests"] == 5
    today = timezone.now().date()
    custom = client_for(owner, org).get("/api/api-usage", {"from": (today - timedelta(days=45)).isoformat(),
                                                           "to": (today - timedelta(days=35)).isoformat()}).json()
    assert custom["totals"]["requests"] == 1 and custom["period"]["days"] == 11


@pytest.mark.parametrize("params,expected", [
    ({"model": "deepseek-v4-flash"}, 2),
    ({"status": "errors"}, 1),
    ({"status": "200"}, 3),
    ({"minLatency": "200", "maxLatency": "1000"}, 2),
    ({"minCost": "0.003"}, 2),
    ({"maxCost": "0.0001"}, 2),
    ({"endpoint": "chat.completions"}, 4),
    ({"endpoint": "messages"}, 0),
])
def test_log_filters(org_with_traffic, params, expected):
    org, owner, *_ = org_with_traffic
    logs = client_for(owner, org).get("/api/api-usage", {"days": 30, **params}).json()["logs"]
    assert len(logs) == expected


def test_filter_by_key_request_id_sort_and_pages(org_with_traffic):
    org, owner, key, calls = org_with_traffic
    client = client_for(owner, org)
    assert {log["key"]["name"] for log in client.get("/api/api-usage", {"key": key.pk}).json()["logs"]} == {"ci"}
    one = client.get("/api/api-usage", {"requestId": calls[1].request_id}).json()["logs"]
    assert [log["requestId"] for log in one] == [calls[1].request_id]
    cheapest = client.get("/api/api-usage", {"sort": "cheapest"}).json()["logs"]
    assert [log["cost"] for log in cheapest] == ["0", "0.0001", "0.003", "0.005"]
    page = client.get("/api/api-usage", {"limit": 3}).json()
    assert len(page["logs"]) == 3 and page["nextOffset"] == 3
    assert len(client.get("/api/api-usage", {"limit": 3, "offset": 3}).json()["logs"]) == 1


@pytest.mark.parametrize("params", [{"days": "0"}, {"days": "abc"}, {"from": "2026-01-01"}, {"sort": "random"},
                                    {"minCost": "lots"}, {"status": "teapot"}])
def test_bad_parameters_are_400(org_with_traffic, params):
    org, owner, *_ = org_with_traffic
    assert client_for(owner, org).get("/api/api-usage", params).status_code == 400


def test_organizations_never_see_each_others_usage(org_with_traffic):
    org, owner, _, calls = org_with_traffic
    other, other_owner = org_with_member(OWNER)
    body = client_for(other_owner, other).get("/api/api-usage", {"days": 90}).json()
    assert body["logs"] == [] and body["totals"]["requests"] == 0
    assert client_for(other_owner, other).get(f"/api/api-usage/{calls[0].request_id}").status_code == 404
    export = b"".join(client_for(other_owner, other).get("/api/api-usage/export", {"days": 90}).streaming_content)
    assert calls[0].request_id.encode() not in export


def test_request_detail_has_attempts_and_tokens(org_with_traffic):
    org, owner, _, calls = org_with_traffic
    detail = client_for(owner, org).get(f"/api/api-usage/{calls[3].request_id}").json()
    assert detail["status"] == 502 and detail["attempts"][0]["status"] == 502
    assert detail["inputTokens"] == 100 and detail["outputTokens"] == 20


def test_csv_export_streams_every_row(org_with_traffic):
    org, owner, _, calls = org_with_traffic
    resp = client_for(owner, org).get("/api/api-usage/export", {"days": 30})
    assert resp.streaming and resp["Content-Type"].startswith("text/csv")
    assert resp["Content-Disposition"] == f'attachment; filename="hypereal-usage-{timezone.now().date()}.csv"'
    rows = list(csv.DictReader(io.StringIO(b"".join(resp.streaming_content).decode())))
    assert sorted(r["request_id"] for r in rows) == sorted(c.request_id for c in calls[:4])
    assert {r["cost_credits"] for r in rows} == {"0.005", "0.003", "0.0001", "0"}


def test_retention_deletes_old_logs_in_batches_and_keeps_rollups(org_with_traffic, settings):
    org, *_ = org_with_traffic
    settings.HYPEREAL = {**settings.HYPEREAL, "LOG_RETENTION_DAYS": 30}
    assert request_logs_prune(batch_size=1) == 1
    assert RequestLog.objects.filter(organization=org).count() == 4
    assert DailyUsage.objects.filter(organization=org).aggregate(r=Sum("requests"))["r"] == 5


def test_the_spend_chart_has_a_slice_only_for_what_cost_something(org_with_traffic):
    """Failed calls are logged under the model asked for (or none): counted in the log, not in the spend."""
    org, owner, *_ = org_with_traffic
    call_records_save(records=[record(org, model="", cost=0, status=400),
                               record(org, model="gpt-5.55", cost=0, status=400)])
    page = client_for(owner, org).get("/usage").content.decode()
    charts = json.loads(re.search(r'<script id="chart-data" type="application/json">(.*?)</script>', page)[1])
    assert charts["byModel"] == {"labels": ["gpt-5.5", "deepseek-v4-flash"], "costs": [0.008, 0.0001]}
