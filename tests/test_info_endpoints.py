"""GET /models, /credits and /key."""

import httpx
from openai import OpenAI

from billing.money import MICRO


def test_models_lists_the_catalog_in_openai_shape(gateway_url, account):
    models = OpenAI(base_url=f"{gateway_url}/api/v1", api_key=account.key).models.list()
    ids = {m.id for m in models.data}
    assert {"gpt-5.5", "gpt-5.4-mini", "deepseek-v4-flash"} <= ids
    assert all(m.object == "model" for m in models.data)


def test_credits_shows_the_wallet_balance(gateway_url, make_account):
    acct = make_account(credits="1234.5")
    resp = httpx.get(f"{gateway_url}/api/v1/credits", headers={"Authorization": f"Bearer {acct.key}"})
    assert resp.status_code == 200
    assert resp.json()["balance"] == 1234.5


def test_key_shows_name_limit_and_month_to_date_spend(gateway_url, make_account):
    acct = make_account(spending_limit=50 * MICRO)
    headers = {"Authorization": f"Bearer {acct.key}"}
    assert httpx.get(f"{gateway_url}/api/v1/key", headers=headers).json()["month_to_date_spend"] == 0
    OpenAI(base_url=f"{gateway_url}/api/v1", api_key=acct.key).chat.completions.create(
        model="gpt-5.5", messages=[{"role": "user", "content": "spend a little"}])
    info = httpx.get(f"{gateway_url}/api/v1/key", headers=headers).json()
    assert info["name"].startswith("key ") and info["spending_limit"] == 50
    assert info["month_to_date_spend"] > 0


def test_info_endpoints_need_a_key(gateway_url):
    for path in ("models", "credits", "key"):
        assert httpx.get(f"{gateway_url}/api/v1/{path}").status_code == 401


def test_wrong_method_is_405(gateway_url, account):
    resp = httpx.get(f"{gateway_url}/api/v1/chat/completions", headers={"Authorization": f"Bearer {account.key}"})
    assert resp.status_code == 405
    assert resp.headers["allow"] == "POST"


def test_a_used_key_records_when_it_was_last_used(gateway_url, account):
    from apikeys.models import ApiKey

    assert ApiKey.objects.get(pk=account.key_id).last_used_at is None
    OpenAI(base_url=f"{gateway_url}/api/v1", api_key=account.key).chat.completions.create(
        model="gpt-5.5", messages=[{"role": "user", "content": "touch"}])
    httpx.get(f"{gateway_url}/api/v1/credits", headers={"Authorization": f"Bearer {account.key}"})
    assert ApiKey.objects.get(pk=account.key_id).last_used_at is not None
