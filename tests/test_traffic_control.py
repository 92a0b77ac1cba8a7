"""Fallback chains, cooldowns, intent routing, disconnects and rate limits, over real HTTP."""

import asyncio
import json
import socket
import time

import httpx
import openai
import pytest
from openai import OpenAI

from gateway.health import health_snapshot, target_cooldown_set
from tests.live import TEST_COOLDOWN_SECONDS, TEST_READ_TIMEOUT
from tests.test_chat_completions import balance
from usage.models import RequestLog


def ask(text: str = "Hello") -> list[dict]:
    return [{"role": "user", "content": text}]


@pytest.fixture
def client(gateway_url, account):
    return OpenAI(base_url=f"{gateway_url}/api/v1", api_key=account.key, max_retries=0)


def logged(gateway_url, account, request_id: str) -> RequestLog:
    balance(gateway_url, account.key)  # makes the gateway write what it served
    return RequestLog.objects.get(request_id=request_id)


def call(client, model: str, **kwargs):
    raw = client.chat.completions.with_raw_response.create(model=model, messages=ask(), **kwargs)
    return raw.parse(), raw.headers


@pytest.mark.parametrize("model,failure", [
    ("tc-500", {"status": 500}),
    ("tc-429", {"status": 429}),
    ("tc-timeout", {"status": None, "error": "timeout"}),
    ("tc-refused", {"status": None, "error": "connect"}),
])
def test_a_failing_primary_is_served_by_the_fallback(gateway_url, account, client, model, failure):
    completion, headers = call(client, model)
    assert completion.choices[0].message.content and completion.model == model
    log = logged(gateway_url, account, headers["x-request-id"])
    assert log.status == 200 and log.upstream_model == f"{model}-b" and log.cost > 0
    primary = [a for a in log.attempts if a["upstream_model"] == f"{model}-a"]
    assert len(primary) == 2, "one retry per target"
    assert all(a["status"] == failure["status"] and a.get("error", "status") == failure.get("error", "status")
               for a in primary)
    assert log.attempts[-1]["upstream_model"] == f"{model}-b" and log.attempts[-1]["status"] == 200
    if model == "tc-timeout":
        assert all(a["latency_ms"] >= TEST_READ_TIMEOUT * 1000 for a in primary), log.attempts


def test_a_client_error_from_upstream_is_returned_without_fallback(gateway_url, account, client):
    with pytest.raises(openai.BadRequestError):
        call(client, "tc-400")
    balance(gateway_url, account.key)
    log = RequestLog.objects.get(organization=account.org)
    assert log.status == 400 and len(log.attempts) == 1 and log.cost == 0


def test_every_target_failing_is_one_clean_error(gateway_url, account, client):
    with pytest.raises(openai.APIStatusError) as exc:
        call(client, "tc-all-fail")
    assert exc.value.status_code == 502 and exc.value.body["type"] == "upstream_error"
    balance(gateway_url, account.key)
    log = RequestLog.objects.get(organization=account.org)
    assert log.status == 502 and len(log.attempts) == 4 and log.cost == 0


def test_a_stream_falls_back_before_its_first_byte(gateway_url, account, client):
    with client.chat.completions.with_streaming_response.create(
            model="tc-stream-500", messages=ask(), stream=True) as resp:
        request_id = resp.headers["x-request-id"]
        text = "".join(c.choices[0].delta.content or "" for c in resp.parse() if c.choices)
    assert text.startswith("Simulated")
    log = logged(gateway_url, account, request_id)
    assert log.status == 200 and log.upstream_model == "tc-stream-500-b" and log.output_tokens > 0


def test_repeated_failures_cool_a_target_down_until_the_cooldown_ends(gateway_url, account, client, redis_client):
    tid = "tc-fail-500/tc-cooldown-a"
    _, first = call(client, "tc-cooldown")
    _, second = call(client, "tc-cooldown")  # 4 failures in a row: past the threshold of 3
    assert health_snapshot([tid])[tid][1] > time.time()
    _, skipped = call(client, "tc-cooldown")
    log = logged(gateway_url, account, skipped["x-request-id"])
    assert [a["upstream_model"] for a in log.attempts] == ["tc-cooldown-b"], "a cooling target gets no traffic"

    deadline = time.monotonic() + TEST_COOLDOWN_SECONDS + 5
    while health_snapshot([tid])[tid][1] > time.time():  # the shared state's clock, not a guess
        assert time.monotonic() < deadline
        time.sleep(0.1)
    _, retried = call(client, "tc-cooldown")
    log = logged(gateway_url, account, retried["x-request-id"])
    assert log.attempts[0]["upstream_model"] == "tc-cooldown-a", "after the cooldown the target is tried again"


def test_intent_picks_the_cheapest_model_of_its_bucket(gateway_url, account, client):
    raw = client.chat.completions.with_raw_response.create(model="", messages=ask(),
                                                           extra_body={"intent": "tc-intent-a"})
    completion = raw.parse()
    assert completion.model == "tc-intent-a-cheap"
    assert logged(gateway_url, account, raw.headers["x-request-id"]).model == "tc-intent-a-cheap"


def test_intent_skips_a_model_whose_targets_are_cooling(gateway_url, account, client):
    target_cooldown_set("tc-good/tc-intent-b-cheap", 60)
    raw = client.chat.completions.with_raw_response.create(model="", messages=ask(),
                                                           extra_body={"intent": "tc-intent-b"})
    assert raw.parse().model == "tc-intent-b-mid"


def test_a_pinned_model_is_honoured_even_when_an_intent_is_given(client):
    completion = client.chat.completions.create(model="tc-intent-a-dear", messages=ask(),
                                                extra_body={"intent": "tc-intent-a"})
    assert completion.model == "tc-intent-a-dear"


def test_unknown_intent_lists_the_known_ones(client):
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="", messages=ask(), extra_body={"intent": "nope"})
    assert exc.value.body["code"] == "intent_not_found" and "chat-fast" in exc.value.body["available_intents"]


def test_a_client_disconnect_cancels_upstream_and_bills_the_partial_stream(gateway_url, account):
    body = json.dumps({"model": "gpt-5.4-mini", "stream": True, "messages": ask("Talk slowly"),
                       "sim": {"chunk_delay_ms": 300, "words": 40}}).encode()
    host, port = gateway_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"POST /api/v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + account.key.encode() + b"\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\n\r\n" + body)
        received = b""
        while received.count(b"data: ") < 3:  # a few words have arrived
            received += sock.recv(65536)
    request_id = received.split(b"x-request-id: ")[1].split(b"\r\n")[0].decode()

    deadline = time.monotonic() + 10
    while not RequestLog.objects.filter(request_id=request_id).exists():
        assert time.monotonic() < deadline, "the disconnected call was never logged"
        balance(gateway_url, account.key)
    log = RequestLog.objects.get(request_id=request_id)
    assert log.status == 499 and log.error_type == "client_disconnected"
    assert 0 < log.output_tokens < 40 and log.cost > 0, "the words already produced are billed"
    assert log.latency_ms < 40 * 300, "the upstream stream was cancelled, not read to the end"


def test_rate_limit_is_exact_across_two_gateway_processes(gateway_url, second_gateway_url, make_account):
    acct = make_account(rpm=50)
    payload = {"model": "deepseek-v4-flash", "messages": ask("limit me")}

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=200)) as http:
            return await asyncio.gather(*(
                http.post(f"{(gateway_url, second_gateway_url)[i % 2]}/api/v1/chat/completions", json=payload,
                          headers={"Authorization": f"Bearer {acct.key}"})
                for i in range(200)))

    responses = asyncio.run(burst())
    ok = [r for r in responses if r.status_code == 200]
    limited = [r for r in responses if r.status_code == 429]
    assert len(ok) == 50 and len(limited) == 150
    for resp in limited:
        assert resp.json()["error"]["type"] == "rate_limit_exceeded"
        assert int(resp.headers["retry-after"]) >= 1
        assert resp.headers["x-ratelimit-limit"] == "50" and resp.headers["x-ratelimit-remaining"] == "0"
    assert sorted(int(r.headers["x-ratelimit-remaining"]) for r in ok) == list(range(50))
    assert all(r.headers["x-ratelimit-limit-requests"] == "50" and 0 < int(r.headers["x-ratelimit-reset"]) <= 60
               for r in ok)


def test_token_limit_reserves_up_front_and_reconciles_to_usage(gateway_url, make_account):
    acct = make_account(tpm=3000)
    client = OpenAI(base_url=f"{gateway_url}/api/v1", api_key=acct.key, max_retries=0)
    first = client.chat.completions.with_raw_response.create(model="gpt-5.5", messages=ask(), max_tokens=2000)
    assert int(first.headers["x-ratelimit-remaining-tokens"]) < 1000  # 2000 output tokens reserved
    # Reconciled to the ~20 tokens really used, the window has room for another large reservation.
    deadline = time.monotonic() + 5
    while True:
        try:
            client.chat.completions.create(model="gpt-5.5", messages=ask(), max_tokens=2000)
            break
        except openai.RateLimitError:
            assert time.monotonic() < deadline, "the reservation was never reconciled"
    with pytest.raises(openai.RateLimitError) as exc:
        client.chat.completions.create(model="gpt-5.5", messages=ask(), max_tokens=2999)
    assert exc.value.response.headers["x-ratelimit-limit-tokens"] == "3000"
