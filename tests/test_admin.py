"""Operators work in Django admin: every page renders, money is read-only, secrets are not shown."""

import pytest
from django.urls import reverse

from billing.services import wallet_credit
from gateway.models import Provider
from gateway.services import provider_upsert
from orgs.models import AuditEvent, Webhook
from orgs.services import organization_create, user_create
from orgs.webhooks import webhook_create

pytestmark = pytest.mark.django_db

PAGES = ["orgs_user", "orgs_organization", "orgs_membership", "orgs_auditevent", "orgs_webhook",
         "orgs_webhookdelivery", "billing_wallet", "billing_ledgerentry", "billing_hold", "billing_paymentevent",
         "apikeys_budgetalert", "apikeys_apikey", "gateway_provider", "gateway_catalogmodel",
         "gateway_fallbacktarget", "usage_requestlog", "gpu_job", "gpu_storedfile"]


@pytest.fixture
def operator(client):
    admin = user_create(email="ops@example.test", password="pw", is_staff=True, is_superuser=True)
    client.force_login(admin)
    return admin


@pytest.mark.parametrize("page", PAGES)
def test_changelist_and_search_render(client, operator, page):
    url = reverse(f"admin:{page}_changelist")
    assert client.get(url).status_code == 200
    assert client.get(url, {"q": "anything"}).status_code == 200


def test_wallet_balance_is_read_only(client, operator):
    org = organization_create(name="Acme", owner=operator)
    wallet_credit(organization_id=org.pk, amount=5_000_000, idempotency_key="grant-acme")
    page = client.get(reverse("admin:billing_wallet_change", args=[org.wallet.pk])).content.decode()
    assert 'name="balance"' not in page  # money moves only through the ledger


def test_provider_key_is_encrypted_and_never_rendered(client, operator):
    provider = provider_upsert(name="upstream", kind=Provider.Kind.OPENAI, base_url="https://api.example.test/v1",
                               api_key="sk-very-secret-upstream")
    assert "sk-very-secret-upstream" not in provider.api_key_encrypted
    assert Provider.objects.get(pk=provider.pk).api_key == "sk-very-secret-upstream"
    page = client.get(reverse("admin:gateway_provider_change", args=[provider.pk])).content.decode()
    assert "sk-very-secret-upstream" not in page and provider.api_key_encrypted not in page


def test_webhook_secret_is_encrypted_and_never_rendered_and_switching_off_is_audited(client, operator):
    org = organization_create(name="Hooks", owner=operator)
    webhook, secret = webhook_create(organization=org, url="https://hooks.example.test/in",
                                     events=["api_key.disabled"], actor=operator)
    assert secret not in webhook.secret_encrypted
    for page in ("changelist", "change"):
        args = [webhook.pk] if page == "change" else []
        html = client.get(reverse(f"admin:orgs_webhook_{page}", args=args)).content.decode()
        assert "hooks.example.test" in html
        assert secret not in html and webhook.secret_encrypted not in html
    resp = client.post(reverse("admin:orgs_webhook_changelist"),
                       {"action": "disable", "_selected_action": [webhook.pk]})
    assert resp.status_code == 302 and not Webhook.objects.get(pk=webhook.pk).enabled
    event = AuditEvent.objects.get(action="webhook.update", target_id=str(webhook.pk))
    assert event.actor == operator and event.after["enabled"] is False
