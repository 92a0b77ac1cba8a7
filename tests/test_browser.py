"""/usage in a real browser: Playwright driving Debian's chromium against the live gateway."""

import csv
import io
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from django.utils import timezone
from openai import OpenAI
from playwright.sync_api import expect, sync_playwright

from billing.tokens import TokenUsage
from usage.services import CallRecord, call_records_save

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
PASSWORD = "a long and unguessable password"
MODELS = ("gpt-5.5", "gpt-5.4-mini", "deepseek-v4-flash")


@pytest.fixture
def member_with_history(make_account):
    """A verified user owning an organization with three weeks of calls on three models."""
    from allauth.account.models import EmailAddress

    acct = make_account(credits="5000")
    owner = acct.org.memberships.get().user
    owner.set_password(PASSWORD)
    owner.save()
    EmailAddress.objects.create(user=owner, email=owner.email, verified=True, primary=True)
    now = timezone.now()
    records = [CallRecord(
        request_id=f"req_seed{uuid.uuid4().hex[:20]}", organization_id=acct.org.pk, api_key_id=acct.key_id,
        endpoint="chat.completions", model=MODELS[i % 3], provider="simulator-openai", upstream_model=MODELS[i % 3],
        status=502 if i % 10 == 9 else 200, latency_ms=100 + 37 * i, usage=TokenUsage(input=300 + i, output=40 + i),
        cost=(i + 1) * 1_000 * (3 if i % 3 == 0 else 1), created_at=now - timedelta(days=i % 21, minutes=i),
        attempts=[{"provider": "simulator-openai", "upstream_model": MODELS[i % 3], "status": 200,
                   "latency_ms": 100 + 37 * i}]) for i in range(42)]
    call_records_save(records=records)
    return acct, owner, records


@pytest.fixture
def page():
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        context = browser.new_context(viewport={"width": 1366, "height": 900}, accept_downloads=True)
        yield context.new_page()
        browser.close()


def test_usage_dashboard_end_to_end(gateway_url, member_with_history, page):
    acct, owner, records = member_with_history
    page.goto(f"{gateway_url}/usage")
    page.fill("input[name=login]", owner.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{gateway_url}/usage")
    page.goto(f"{gateway_url}/usage?org={acct.org.slug}")  # the owner also has a personal organization

    # Charts drawn from the rollups.
    page.wait_for_function("() => window.Chart && Chart.getChart('cost-by-model') && Chart.getChart('daily-cost')")
    labels = page.evaluate("() => Chart.getChart('cost-by-model').data.labels")
    assert sorted(labels) == sorted(MODELS)
    assert page.evaluate("() => Chart.getChart('daily-cost').data.labels.length") == 30
    expect(page.get_by_test_id("total-cost")).not_to_have_text("0")
    page.screenshot(path=ARTIFACTS / "usage.png", full_page=True)

    # Filter the log: only one model's rows stay.
    rows = page.locator("#log-rows tr[data-request-id]")
    expect(rows).to_have_count(42)
    page.get_by_test_id("log-filters").locator("select[name=model]").select_option("deepseek-v4-flash")
    expect(rows).to_have_count(14)
    assert set(rows.locator("td:nth-child(3)").all_inner_texts()) == {"deepseek-v4-flash"}

    # Open a request: tokens and attempts.
    rows.first.click()
    detail = page.get_by_test_id("request-detail")
    expect(detail).to_be_visible()
    expect(page.get_by_test_id("attempts")).to_contain_text("simulator-openai")
    page.screenshot(path=ARTIFACTS / "usage-filtered-detail.png", full_page=True)

    # Export CSV: every call of the period, one row each.
    with page.expect_download() as download:
        page.get_by_test_id("export").click()
    assert download.value.suggested_filename.startswith("hypereal-usage-")
    exported = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert sorted(r["request_id"] for r in exported) == sorted(r.request_id for r in records)

    # Live: back to the unfiltered log, make a call, watch its row arrive without reloading.
    page.get_by_test_id("log-filters").locator("select[name=model]").select_option("")
    expect(rows).to_have_count(42)
    page.wait_for_function("() => document.body.dataset.live === 'connected'")
    raw = OpenAI(base_url=f"{gateway_url}/api/v1", api_key=acct.key).chat.completions.with_raw_response.create(
        model="gpt-5.4-mini", messages=[{"role": "user", "content": "live row please"}])
    request_id = raw.headers["x-request-id"]
    httpx.get(f"{gateway_url}/api/v1/credits", headers={"Authorization": f"Bearer {acct.key}"})  # write it now
    new_row = page.locator(f'#log-rows tr[data-request-id="{request_id}"]')
    expect(new_row).to_be_visible(timeout=10_000)
    expect(new_row).to_contain_text("gpt-5.4-mini")
    page.screenshot(path=ARTIFACTS / "usage-live.png", full_page=True)


def test_pages_fit_a_phone(gateway_url, member_with_history, page):
    acct, owner, _ = member_with_history
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{gateway_url}/accounts/login/")
    page.fill("input[name=login]", owner.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{gateway_url}/usage")
    page.goto(f"{gateway_url}/usage?org={acct.org.slug}")  # remembered for the pages that follow
    for path in ("/usage", "/playground", "/models", "/keys", "/billing", "/settings", "/audit"):
        page.goto(f"{gateway_url}{path}")
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{path} scrolls sideways by {overflow}px on a phone"
        page.screenshot(path=ARTIFACTS / f"phone{path.replace('/', '-')}.png", full_page=True)
