"""OpenAI chat completions through a live gateway and simulator, with the official openai SDK."""

import asyncio
import json
from decimal import Decimal

import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from billing.models import LedgerEntry
from billing.money import MICRO
from usage.models import RequestLog

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def micro(cost: float) -> int:
    """The SDK hands back usage.cost as a JSON number of credits; money is compared in micro-credits."""
    return int(Decimal(str(cost)) * MICRO)


def balance(gateway_url: str, key: str) -> int:
    """GET /credits also makes this gateway process write what it has served so far."""
    resp = httpx.get(f"{gateway_url}/api/v1/credits", headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 200
    return micro(resp.json()["balance"])


@pytest.fixture
def client(gateway_url, account):
    return OpenAI(base_url=f"{gateway_url}/api/v1", api_key=account.key, max_retries=0)


def test_non_stream_returns_the_reply_and_charges_its_reported_cost(gateway_url, account, client):
    before = balance(gateway_url, account.key)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-5.5", messages=[{"role": "user", "content": "Say hello to Paris"}])
    completion = raw.parse()
    assert completion.choices[0].message.content
    assert completion.model == "gpt-5.5"
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0
    cost = micro(completion.usage.model_extra["cost"])
    assert cost > 0
    assert micro(float(raw.headers["x-hypereal-credits"])) == cost
    request_id = raw.headers["x-request-id"]
    assert balance(gateway_url, account.key) == before - cost

    log = RequestLog.objects.get(request_id=request_id)
    assert (log.organization_id, log.api_key_id, log.status, log.stream) == (account.org.pk, account.key_id, 200, False)
    assert (log.input_tokens, log.output_tokens) == (completion.usage.prompt_tokens, completion.usage.completion_tokens)
    assert log.cost == cost
    assert LedgerEntry.objects.get(idempotency_key=f"call:{request_id}").amount == -cost


def test_cost_follows_the_model_per_million_token_prices(gateway_url, account, client):
    completion = client.chat.completions.create(model="deepseek-v4-flash",
                                                messages=[{"role": "user", "content": "price check"}])
    usage = completion.usage
    # deepseek-v4-flash: 7 credits per million input tokens, 28 per million output tokens (rounded up).
    expected = -(-(usage.prompt_tokens * 7 * MICRO + usage.completion_tokens * 28 * MICRO) // 1_000_000)
    assert micro(usage.model_extra["cost"]) == expected


def test_stream_without_include_usage_hides_usage_but_still_bills(gateway_url, account, client):
    before = balance(gateway_url, account.key)
    with client.chat.completions.with_streaming_response.create(
            model="gpt-5.4-mini", stream=True, messages=[{"role": "user", "content": "Stream to me"}]) as resp:
        request_id = resp.headers["x-request-id"]
        chunks = list(resp.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert all(c.usage is None for c in chunks), "the client did not ask for usage"
    spent = before - balance(gateway_url, account.key)
    log = RequestLog.objects.get(request_id=request_id)
    assert log.stream and log.status == 200 and log.output_tokens > 0
    assert spent == log.cost > 0


def test_stream_with_include_usage_reports_the_charged_cost(gateway_url, account, client):
    before = balance(gateway_url, account.key)
    stream = client.chat.completions.create(model="gpt-5.5", stream=True, stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": "Stream with usage"}])
    chunks = list(stream)
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1 and usage_chunks[0] is chunks[-1] and chunks[-1].choices == []
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    whole = client.chat.completions.create(model="gpt-5.5",
                                           messages=[{"role": "user", "content": "Stream with usage"}])
    assert streamed == whole.choices[0].message.content
    assert usage_chunks[0].usage.completion_tokens == whole.usage.completion_tokens
    cost = micro(usage_chunks[0].usage.model_extra["cost"])
    assert before - balance(gateway_url, account.key) == cost + micro(whole.usage.model_extra["cost"])


def test_tool_call_round_trip(gateway_url, account, client):
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.chat.completions.create(model="gpt-5.5", messages=messages, tools=[WEATHER_TOOL])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}

    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "18 degrees and sunny"}]
    second = client.chat.completions.create(model="gpt-5.5", messages=messages, tools=[WEATHER_TOOL])
    assert second.choices[0].finish_reason == "stop"
    assert "18 degrees and sunny" in second.choices[0].message.content


def test_streamed_tool_call_reassembles_in_the_sdk(gateway_url, account, client):
    with client.chat.completions.stream(model="gpt-5.5", tools=[WEATHER_TOOL],
                                        messages=[{"role": "user", "content": "Weather in Rome?"}]) as stream:
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Rome"}


def test_fifty_concurrent_async_calls_are_each_charged_exactly_once(gateway_url, make_account):
    acct = make_account(credits="5000")
    before = balance(gateway_url, acct.key)

    async def run() -> list:
        client = AsyncOpenAI(base_url=f"{gateway_url}/api/v1", api_key=acct.key, max_retries=0)
        calls = []
        for i in range(50):
            if i % 2:
                calls.append(client.chat.completions.create(
                    model="gpt-5.5", messages=[{"role": "user", "content": f"parallel call {i}"}]))
            else:
                calls.append(_stream_cost(client, i))
        try:
            return await asyncio.gather(*calls)
        finally:
            await client.close()

    async def _stream_cost(client, i):
        stream = await client.chat.completions.create(
            model="gpt-5.4-mini", stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": f"parallel stream {i}"}])
        return [c async for c in stream][-1]

    results = asyncio.run(run())
    reported = sum(micro(r.usage.model_extra["cost"]) for r in results)
    drop = before - balance(gateway_url, acct.key)

    logs = RequestLog.objects.filter(organization=acct.org)
    charges = LedgerEntry.objects.filter(wallet__organization=acct.org, kind=LedgerEntry.Kind.CHARGE)
    assert logs.count() == 50 and charges.count() == 50
    assert sum(logs.values_list("cost", flat=True)) == -sum(charges.values_list("amount", flat=True)) \
        == drop == reported > 0


def test_bad_key_is_rejected(gateway_url, account):
    client = OpenAI(base_url=f"{gateway_url}/api/v1", api_key="ck_not-a-real-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as exc:
        client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
    assert exc.value.body["code"] == "invalid_api_key"
    other = OpenAI(base_url=f"{gateway_url}/api/v1", api_key="sk-not-ours", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        other.models.list()


def test_revoked_key_is_rejected(gateway_url, account, client):
    from apikeys.models import ApiKey
    from apikeys.services import api_key_revoke

    api_key_revoke(key=ApiKey.objects.get(pk=account.key_id))
    fresh = OpenAI(base_url=f"{gateway_url}/api/v1", api_key=account.key, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as exc:  # first use: nothing cached yet
        fresh.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
    assert exc.value.body["code"] == "api_key_inactive"


def test_unknown_model_lists_the_available_ones(client):
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="gpt-0", messages=[{"role": "user", "content": "hi"}])
    assert exc.value.body["code"] == "model_not_found"
    assert {"gpt-5.5", "gpt-5.4-mini", "deepseek-v4-flash"} <= set(exc.value.body["available_models"])


def test_missing_model_is_a_bad_request(gateway_url, account):
    resp = httpx.post(f"{gateway_url}/api/v1/chat/completions", headers={"Authorization": f"Bearer {account.key}"},
                      json={"messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "missing_model"


def test_insufficient_credits_is_402_and_costs_nothing(gateway_url, make_account):
    poor = make_account(credits="150")  # below the 200-credit floor for LLM calls
    client = OpenAI(base_url=f"{gateway_url}/api/v1", api_key=poor.key, max_retries=0)
    with pytest.raises(openai.APIStatusError) as exc:
        client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
    assert exc.value.status_code == 402
    assert exc.value.body["type"] == "insufficient_credits"
    assert balance(gateway_url, poor.key) == 150 * MICRO
    assert RequestLog.objects.get(organization=poor.org).status == 402


def test_invalid_json_is_a_bad_request(gateway_url, account):
    resp = httpx.post(f"{gateway_url}/api/v1/chat/completions", content=b"{not json",
                      headers={"Authorization": f"Bearer {account.key}", "Content-Type": "application/json"})
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "invalid_json"
    assert resp.headers["x-request-id"].startswith("req_")


def test_oversized_body_is_413(gateway_url, account):
    from tests.live import TEST_MAX_BODY_BYTES

    huge = "x" * (TEST_MAX_BODY_BYTES + 1)
    resp = httpx.post(f"{gateway_url}/api/v1/chat/completions", headers={"Authorization": f"Bearer {account.key}"},
                      json={"model": "gpt-5.5", "messages": [{"role": "user", "content": huge}]})
    assert resp.status_code == 413
    assert resp.json()["error"]["type"] == "request_too_large"


def test_v1_mirror_serves_the_same_api(gateway_url, account):
    client = OpenAI(base_url=f"{gateway_url}/v1", api_key=account.key, max_retries=0)
    assert client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}]).choices


def test_upstream_cut_mid_stream_ends_with_an_error_event_and_bills_what_was_sent(gateway_url, account, client):
    before = balance(gateway_url, account.key)
    with client.chat.completions.with_streaming_response.create(
            model="gpt-5.5", stream=True, messages=[{"role": "user", "content": "cut me off"}],
            extra_body={"sim": {"cut_after": 4}}) as resp:
        request_id = resp.headers["x-request-id"]
        received = []
        with pytest.raises(openai.APIError, match="interrupted"):
            for chunk in resp.parse():
                received.append(chunk)
    assert "".join(c.choices[0].delta.content or "" for c in received if c.choices)
    spent = before - balance(gateway_url, account.key)
    log = RequestLog.objects.get(request_id=request_id)
    assert (log.status, log.error_type) == (502, "upstream_stream_interrupted")
    assert log.output_tokens > 0 and spent == log.cost > 0
