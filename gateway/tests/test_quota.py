"""What a call reserves and the output it is allowed, the journal's record format, and the counters'
upkeep in Redis (rebuilt after Redis lost its state, repaired when out of step), in process against the
real Redis and PostgreSQL."""

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
import redis as sync_redis
from django.conf import settings
from django.db import connection
from django.test import override_settings

from billing.pricing import PER, TokenPrices
from billing.tokens import TokenUsage
from gateway import metering, quota
from gateway import redis as gateway_redis
from gateway.auth import KeyContext
from gateway.errors import GatewayError
from gateway.formats.anthropic import ANTHROPIC
from gateway.formats.chat import CHAT
from gateway.formats.gemini import GEMINI
from gateway.formats.responses import RESPONSES
from usage.services import CallRecord

PRICES = TokenPrices(input=1_000_000, cached_input=100_000, cache_write=1_250_000, output=4_000_000)  # µcr/Mtok


def conf(**overrides):
    return override_settings(HYPEREAL={**settings.HYPEREAL, **overrides})


def cost(budget: quota.Budget, output: int) -> int:
    return -(-(budget.prompt + output * PRICES.output) // PER)


@pytest.mark.no_services
def test_a_call_with_max_tokens_reserves_exactly_it_and_keeps_its_own_cap():
    with conf(OUTPUT_TOKENS_RESERVE=1024):
        budget = quota.call_budget(PRICES, prompt_bytes=1000, max_output=200, model_max=128_000)
    assert budget.least == budget.most == cost(budget, 200) and budget.share == 1
    assert budget.prompt == 1000 * PRICES.cache_write, "every byte a prompt token at the dearest prompt price"
    assert budget.output_cap(budget.most) is None, "the client's max_tokens is the cap already"


@pytest.mark.no_services
def test_a_call_without_max_tokens_reserves_up_to_the_models_limit_and_is_capped_to_what_it_got():
    with conf(OUTPUT_TOKENS_RESERVE=1024, OUTPUT_RESERVE_SHARE=32):
        budget = quota.call_budget(PRICES, prompt_bytes=1000, max_output=None, model_max=128_000)
    assert (budget.least, budget.most, budget.share) == (cost(budget, 1024), cost(budget, 128_000), 32)
    assert budget.output_cap(budget.most) is None, "the model stops at its own limit"
    assert budget.output_cap(budget.least) == 1024
    assert budget.output_cap(cost(budget, 5000)) == 5000
    for amount in (budget.least, cost(budget, 777) + 3, budget.most - 1):
        cap = budget.output_cap(amount)
        assert -(-(1000 * PRICES.cache_write + cap * PRICES.output) // PER) <= amount, "the cap never costs more"


@pytest.mark.no_services
def test_a_model_without_a_known_limit_is_always_sent_the_ceiling_at_most():
    with conf(OUTPUT_TOKENS_RESERVE=1024, OUTPUT_TOKENS_CEILING=8192):
        budget = quota.call_budget(PRICES, prompt_bytes=10, max_output=None, model_max=None)
        free = quota.call_budget(TokenPrices(1, 0, 0, 0), prompt_bytes=10, max_output=None, model_max=None)
    assert budget.output_cap(budget.most) == 8192 and budget.output_cap(budget.most * 10) == 8192
    assert free.output_cap(free.least) == 8192, "even free output is bounded, since the upstream's is not known"


@pytest.mark.no_services
def test_max_tokens_that_is_no_count_reserves_as_if_absent():
    with conf(OUTPUT_TOKENS_RESERVE=1024, OUTPUT_RESERVE_SHARE=32):
        for odd in (True, 0, -5, "10", None):
            assert quota.call_budget(PRICES, prompt_bytes=10, max_output=odd, model_max=4096).share == 32


@pytest.mark.no_services
def test_each_format_caps_output_in_its_own_field_and_never_raises_a_lower_cap():
    assert CHAT.cap_output({"model": "m"}, 50) == {"model": "m", "max_completion_tokens": 50}
    assert CHAT.cap_output({"max_tokens": 900}, 50) == {"max_tokens": 50}
    assert CHAT.cap_output({"max_completion_tokens": 10}, 50) == {"max_completion_tokens": 10}
    assert ANTHROPIC.cap_output({"max_tokens": 4096}, 50) == {"max_tokens": 50}
    assert RESPONSES.cap_output({"input": "hi"}, 50) == {"input": "hi", "max_output_tokens": 50}
    assert GEMINI.cap_output({"contents": []}, 50) == {"contents": [], "generationConfig": {"maxOutputTokens": 50}}
    snake = {"generation_config": {"max_output_tokens": 900, "temperature": 0}}
    assert GEMINI.cap_output(snake, 50) == {"generation_config": {"max_output_tokens": 50, "temperature": 0}}
    assert snake["generation_config"]["max_output_tokens"] == 900, "the client's body is never changed"


@pytest.mark.no_services
def test_a_journaled_record_reads_back_as_it_was_written():
    record = CallRecord(request_id="req_1", organization_id=7, api_key_id=9, endpoint="messages", model="m",
                        provider="p", upstream_model="u", status=200, latency_ms=12,
                        usage=TokenUsage(input=10, cached_read=2, cache_write=3, output=40, reasoning=5), cost=1234,
                        created_at=datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC), stream=True, ttft_ms=4,
                        error_type="", attempts=[{"provider": "p", "status": 200}], api_key_name="ci", unit="",
                        units=0, prepaid=False)
    assert metering.record_loads(metering.record_dumps(record)) == record


# --- the counters in Redis, in process ---------------------------------------------------------------------------


@pytest.fixture
def state(transactional_db, monkeypatch):
    """This test process as a gateway process: a fresh presence in a flushed Redis, a short lease."""
    client = sync_redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    monkeypatch.setattr(quota, "_presence", quota._Presence())
    monkeypatch.setattr(quota, "_settler", quota._Settler())
    monkeypatch.setattr(metering, "meter", metering.Meter())
    monkeypatch.setattr(quota, "meter", metering.meter)

    async def run_db_here(fn, /, *args, **kwargs):  # no connection left open past the test
        try:
            return fn(*args, **kwargs)
        finally:
            connection.close()
    monkeypatch.setattr(quota, "run_db", run_db_here)
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")  # which run_db_here is, knowingly
    with conf(LEASE_SECONDS=1.0):
        yield client
    client.flushdb()
    client.close()


def account(credits: int, limit: int | None = None) -> KeyContext:
    from apikeys.services import api_key_create
    from billing.services import wallet_credit
    from orgs.services import organization_create, user_create

    tag = uuid.uuid4().hex[:8]
    owner = user_create(email=f"q-{tag}@example.test", password="pw-unused-123")
    org = organization_create(name=f"Q {tag}", owner=owner)
    wallet_credit(organization_id=org.pk, amount=credits, idempotency_key=f"q-grant:{tag}")
    key, _ = api_key_create(organization=org, name="q", created_by=owner, monthly_spend_limit=limit)
    return KeyContext(key_id=key.pk, org_id=org.pk, name="q", monthly_spend_limit=limit, active=True, rpm=0, tpm=0)


def served(ctx: KeyContext, cost: int) -> CallRecord:
    return CallRecord(request_id=f"req_q_{uuid.uuid4().hex}", organization_id=ctx.org_id, api_key_id=ctx.key_id,
                      endpoint="chat.completions", model="m", provider="p", upstream_model="u", status=200,
                      latency_ms=1, usage=TokenUsage(input=1, output=1), cost=cost,
                      created_at=datetime.now(UTC))


def run(coro):
    async def scoped():
        try:
            return await coro
        finally:
            await gateway_redis.close()
    return asyncio.run(scoped())


async def take_when_rebuilt(ctx: KeyContext, amount: int) -> quota.Reservation:
    """Calls get 503 while every process writes its state back: retry until the rebuild window closed."""
    deadline = asyncio.get_running_loop().time() + 5
    while True:
        try:
            return await quota.take(ctx, amount=amount, tokens=0, floor=0)
        except GatewayError as err:
            assert err.status == 503 and asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)  # polling for the window's end, bounded by the deadline


def test_after_redis_loses_everything_the_counter_counts_open_and_unwritten_calls(state):
    ctx = account(100_000)

    async def go():
        open_call = await quota.take(ctx, amount=30_000, tokens=0, floor=0)
        ended = await quota.take(ctx, amount=20_000, tokens=0, floor=0)
        await quota.settle(ended, cost=5_000, tokens=0, record=served(ctx, 5_000))  # journaled, not written
        state.flushdb()
        with pytest.raises(GatewayError) as refused:
            await quota.take(ctx, amount=1, tokens=0, floor=0)
        assert refused.value.status == 503, "refused while the processes write their state back"
        probe = await take_when_rebuilt(ctx, 1_000)
        return open_call, probe

    open_call, probe = run(go())
    spendable = int(state.get(quota.spendable_key(ctx.org_id)))
    assert spendable == 100_000 - 5_000 - open_call.amount - probe.amount, "ledger − unwritten − reservations"


def test_a_counter_out_of_step_is_repaired_and_reported(state, caplog):
    ctx = account(50_000)

    async def go():
        await quota.settle(await quota.take(ctx, amount=10_000, tokens=0, floor=0), cost=4_000, tokens=0,
                           record=served(ctx, 4_000))
        state.set(quota.spendable_key(ctx.org_id), 999_999)
        return await quota.reconcile()

    repairs = run(go())
    assert repairs == [(quota.spendable_key(ctx.org_id), 999_999, 46_000)]
    assert int(state.get(quota.spendable_key(ctx.org_id))) == 46_000
    assert "out of step with the ledger" in caplog.text


def test_the_reservations_of_a_process_that_stopped_renewing_its_lease_come_back(state):
    ctx = account(80_000)
    dead = quota._Presence()

    async def go():
        quota._presence, alive = dead, quota._presence
        try:
            await quota.take(ctx, amount=25_000, tokens=0, floor=0)  # taken by the "dead" process
        finally:
            quota._presence = alive
        await alive.joined()
        deadline = asyncio.get_running_loop().time() + 5
        while state.exists(dead.lease_key):  # its lease (1 s) runs out; the living reap it at their renewal
            assert asyncio.get_running_loop().time() < deadline, "not reaped within the lease"
            await alive.beat()
            await asyncio.sleep(0.05)  # polling, bounded by the deadline
            if alive._chores is not None:
                await alive._chores

    run(go())
    assert int(state.get(quota.spendable_key(ctx.org_id))) == 80_000
