"""Money and answers through faults, on the real PostgreSQL and Redis with gateway processes on loopback:
a gateway killed under load, Redis flushed mid-burst, processes racing a small wallet, calls that would
outspend their wallet, and charges read on another process. Every test compares what the clients were
told with the RequestLog rows, the ledger, the wallet and the Redis counters."""

import asyncio
import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx
import pytest

from billing.models import LedgerEntry, Wallet
from billing.money import MICRO
from billing.spendable import spendable_key
from tests.live import flushed_redis, free_port, start_gateway, stop_process, wait_for
from tests.test_chat_completions import micro
from usage.models import RequestLog

LEASE = 2  # seconds: a killed process's reservations come back within LEASE + LEASE / 5
DEAR = "ft-dear"  # 0.1 credit an output token: its least reservation (1,024 tokens) is about 103 credits
CHEAP = "ft-cheap"  # about 0.02 credits a call of 20 output tokens
# Redis database of this module's own: its tests flush Redis, which would take every other gateway's state of
# the suite with it, and those gateways' reconciliation (a minute apart, one process at a time) would hold
# off this module's.
FAULT_REDIS_URL = urlsplit(os.environ.get("REDIS_URL", ""))._replace(path="/13").geturl()
# A short lease, reconciliation every second (it must never "repair" a right counter under load), no LLM
# floor (a wallet's whole balance is at stake).
FAULT_SETTINGS = {"REDIS_URL": FAULT_REDIS_URL, "HYPEREAL_LEASE_SECONDS": str(LEASE),
                  "HYPEREAL_RECONCILE_SECONDS": "1", "HYPEREAL_MIN_BALANCE_CREDITS": "0"}
# A gateway that never writes its own calls to the database: only its journal in Redis has them.
WRITES_NOTHING = {"HYPEREAL_METER_FLUSH_MS": "600000", "HYPEREAL_METER_FLUSH_CALLS": "1000000"}


@pytest.fixture(scope="module")
def redis_client():
    """This module's Redis database, as its gateways see it."""
    yield from flushed_redis(FAULT_REDIS_URL)


@pytest.fixture(scope="module")
def fault_models(demo_catalog, sim_url):
    from gateway.models import Provider
    from gateway.services import model_upsert, provider_upsert

    sim = provider_upsert(name="ft-sim", kind=Provider.Kind.OPENAI, base_url=f"{sim_url}/v1", api_key="k")
    model_upsert(public_id=DEAR, capability="chat", targets=[(sim, DEAR)],
                 prices_per_mtok={"input": "1000", "output": "100000"})
    model_upsert(public_id=CHEAP, capability="chat", targets=[(sim, CHEAP)],
                 prices_per_mtok={"input": "100", "output": "1000"})


@pytest.fixture(scope="module")
def pair(fault_models, redis_client):
    """Two gateway processes sharing Redis, with FAULT_SETTINGS."""
    started = [start_gateway(**FAULT_SETTINGS) for _ in range(2)]
    yield [url for url, _ in started]
    for _, proc in started:
        stop_process(proc)


def chat(content: str = "spend", *, max_tokens: int | None = 20, model: str = CHEAP, stream: bool = False,
         **sim) -> dict:
    """A chat body; ``sim``: the simulator's directives (words of output, upstream latency)."""
    return {"model": model, "messages": [{"role": "user", "content": content}], "stream": stream,
            **({"max_tokens": max_tokens} if max_tokens else {}), **({"sim": sim} if sim else {})}


async def call(http: httpx.AsyncClient, url: str, key: str, payload: dict) -> dict | None:
    """One call as its client saw it: status, request id, the cost it was told (µcr), its finish — or None
    when no complete answer came back."""
    headers = {"Authorization": f"Bearer {key}"}
    try:
        if not payload.get("stream"):
            resp = await http.post(f"{url}/api/v1/chat/completions", json=payload, headers=headers)
            body = resp.json()
            told = body.get("usage", {}).get("cost")
            finish = body["choices"][0]["finish_reason"] if resp.status_code == 200 else None
            return {"status": resp.status_code, "id": resp.headers["x-request-id"], "finish": finish,
                    "cost": micro(told) if told is not None else None}
        async with http.stream("POST", f"{url}/api/v1/chat/completions", headers=headers,
                               json={**payload, "stream_options": {"include_usage": True}}) as resp:
            raw = await resp.aread()
        events = [json.loads(line[6:]) for line in raw.decode().splitlines()
                  if line.startswith("data: {")]
        usage = next((e["usage"] for e in events if e.get("usage")), None)
        finish = next((c["finish_reason"] for e in events for c in e.get("choices", []) if c.get("finish_reason")),
                      None)
        return {"status": resp.status_code, "id": resp.headers["x-request-id"], "finish": finish,
                "cost": micro(usage["cost"]) if usage else None}
    except (httpx.HTTPError, json.JSONDecodeError):
        return None


def burst(urls: list[str], key: str, payloads: list[dict]) -> list[dict | None]:
    async def run():
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=len(payloads))) as http:
            return await asyncio.gather(*(call(http, urls[i % len(urls)], key, p) for i, p in enumerate(payloads)))
    return asyncio.run(run())


def open_reservations(redis_client) -> int:
    return sum(redis_client.hlen(lease) for lease in redis_client.scan_iter("hypereal:lease:*"))


def flush_everywhere(urls: list[str], key: str) -> None:
    for url in urls:  # GET /credits makes each process write what it has queued
        assert httpx.get(f"{url}/api/v1/credits", headers={"Authorization": f"Bearer {key}"}).status_code == 200


def assert_books(acct, grant: int, redis_client) -> Wallet:
    """The ledger proves the wallet, every charge is a logged call's cost, and Redis's counter agrees."""
    wallet = Wallet.objects.get(organization=acct.org)
    entries = LedgerEntry.objects.filter(wallet=wallet)
    assert wallet.balance >= 0 and sum(entries.values_list("amount", flat=True)) == wallet.balance
    charges = dict(entries.filter(kind=LedgerEntry.Kind.CHARGE).values_list("reference", "amount"))
    logged = dict(RequestLog.objects.filter(organization=acct.org, cost__gt=0).values_list("request_id", "cost"))
    assert {ref: -amount for ref, amount in charges.items()} == logged, "each charge is its call's logged cost"
    assert grant - sum(logged.values()) == wallet.balance
    assert not RequestLog.objects.filter(organization=acct.org, uncollected__gt=0).exists(), "never overdrawn"
    wait_for(lambda: int(redis_client.get(spendable_key(acct.org.pk)) or wallet.balance) == wallet.balance,
             seconds=LEASE * 3, what="the spendable counter equals the wallet once nothing is in flight")
    return wallet


def test_a_gateway_killed_under_load_loses_no_answered_call(pair, make_account, redis_client):
    """kill -9 at about 200 calls a second: every answer the clients got is logged and charged exactly once
    (replayed by the surviving processes from the dead one's journal, which alone had them: it never wrote
    its own), and the reservations of the calls it held come back within the lease."""
    acct = make_account(credits="1000")
    grant = 1000 * MICRO
    doomed_url, doomed = start_gateway(**FAULT_SETTINGS, **WRITES_NOTHING)
    answers: list[dict | None] = []

    async def load():
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=400)) as http:
            tasks = []
            started = time.monotonic()
            while time.monotonic() - started < 8 and doomed.poll() is None:
                payload = chat(f"load {len(tasks)}", stream=len(tasks) % 3 == 0, latency_ms=20)
                tasks.append(asyncio.ensure_future(call(http, doomed_url, acct.key, payload)))
                if sum(t.done() and t.result() is not None and t.result()["status"] == 200 for t in tasks) >= 150:
                    os.kill(doomed.pid, signal.SIGKILL)  # mid-load: calls are in flight
                    break
                await asyncio.sleep(0.005)  # the load's pace (200 calls a second), not a wait for anything
            answers.extend(await asyncio.gather(*tasks))

    try:
        asyncio.run(load())
        doomed.wait(10)
        assert doomed.returncode == -signal.SIGKILL
        answered = {a["id"]: a for a in answers if a is not None and a["status"] == 200}
        assert len(answered) >= 150 and len(answers) > len(answered), "killed with calls still in flight"

        def logged() -> dict[str, int]:
            rows = dict(RequestLog.objects.filter(request_id__in=answered).values_list("request_id", "cost"))
            return rows if rows.keys() == answered.keys() else {}

        costs = wait_for(logged, seconds=LEASE * 10, what="every answered call logged once the others reaped it")
        assert costs == {request_id: a["cost"] for request_id, a in answered.items()}, "charged as told"
        assert RequestLog.objects.filter(request_id__in=answered, status=200).count() == len(answered)
        flush_everywhere(pair, acct.key)
        assert_books(acct, grant, redis_client)
    finally:
        if doomed.poll() is None:
            doomed.kill()


def test_flushing_redis_mid_burst_never_overdraws(fault_models, make_account, redis_client):
    """Redis loses everything, three times, while calls hold reservations on two processes that write
    nothing to the database themselves: each next burst comes after the rebuild window with the earlier
    calls still in flight or unwritten, so the counters must be rebuilt from the ledger minus every
    process's open reservations and journaled calls, or the wallet (no floor) would be overdrawn."""
    acct = make_account(credits="250")
    grant = 250 * MICRO
    started = [start_gateway(**FAULT_SETTINGS, **WRITES_NOTHING) for _ in range(2)]
    urls = [url for url, _ in started]

    async def until(condition, what: str) -> None:
        deadline = time.monotonic() + LEASE * 5
        while not condition():
            assert time.monotonic() < deadline, what
            await asyncio.sleep(0.01)  # polling a condition, bounded by the deadline

    async def bursts() -> list[dict | None]:
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=60)) as http:
            tasks = []
            for n in range(3):
                # About 8 credits each, 480 asked in all; still upstream when the next burst comes.
                held = open_reservations(redis_client)
                burst_ = [asyncio.ensure_future(call(http, urls[i % 2], acct.key, chat(
                    f"burst {n}", model=DEAR, max_tokens=80, words=200, latency_ms=3000))) for i in range(20)]
                tasks += burst_
                await until(lambda: open_reservations(redis_client) - held + sum(t.done() for t in burst_) >= 20,
                            "every call of the burst taken or refused")
                redis_client.flushdb()
                await until(lambda: redis_client.exists("hypereal:epoch") and not redis_client.exists(
                    "hypereal:rebuilding"), "the processes wrote their state back")
            return await asyncio.gather(*tasks)

    try:
        answers = asyncio.run(bursts())
        served = [a for a in answers if a and a["status"] == 200]
        assert served and all(a and a["status"] in (200, 402, 503) for a in answers)
        flush_everywhere(urls, acct.key)
        wallet = assert_books(acct, grant, redis_client)
        assert sum(a["cost"] for a in served) == grant - wallet.balance <= grant
    finally:
        for _, proc in started:
            stop_process(proc)


def test_two_processes_racing_a_small_wallet_without_max_tokens_never_overdraw(pair, make_account,
                                                                              redis_client):
    """Forty calls that would each cost 300 credits uncapped, on a 250-credit wallet, across two processes:
    each is served only what its reservation covers, and the wallet ends at or above zero."""
    acct = make_account(credits="250")
    answers = burst(pair, acct.key, [chat("race", model=DEAR, max_tokens=None, words=3000) for _ in range(40)])
    served = [a for a in answers if a and a["status"] == 200]
    assert served and all(a["status"] in (200, 402) for a in answers)
    assert all(a["finish"] == "length" for a in served), "cut where the reservation ran out"
    flush_everywhere(pair, acct.key)
    wallet = assert_books(acct, 250 * MICRO, redis_client)
    assert sum(a["cost"] for a in served) == 250 * MICRO - wallet.balance


@pytest.mark.parametrize("stream", [False, True])
def test_a_call_without_max_tokens_is_capped_to_what_the_wallet_covers(pair, make_account, redis_client, stream):
    """201 credits and a call that would produce 300 credits of output: it is served up to what its
    reservation pays for, ends with the format's length finish, and is charged in full; the next call,
    which the rest cannot cover, is refused."""
    acct = make_account(credits="201")
    [first] = burst(pair, acct.key, [chat("long", model=DEAR, max_tokens=None, words=3000, stream=stream)])
    [second] = burst(pair, acct.key, [chat("again", model=DEAR, max_tokens=None, stream=stream)])
    assert first["status"] == 200 and first["finish"] == "length"
    assert 0 < first["cost"] <= 201 * MICRO
    assert second["status"] == 402, "what is left cannot cover a call's least"
    flush_everywhere(pair, acct.key)
    wallet = assert_books(acct, 201 * MICRO, redis_client)
    assert wallet.balance == 201 * MICRO - first["cost"]


def test_credits_and_key_read_charges_served_by_another_process(pair, make_account, redis_client):
    """Forty calls on one process, which writes nothing itself; GET /credits and /key on another process
    right after include every charge the calls were told."""
    acct = make_account(credits="1000", spending_limit=900 * MICRO)
    quiet_url, quiet = start_gateway(**FAULT_SETTINGS, **WRITES_NOTHING)
    other_url = pair[0]
    try:
        answers = burst([quiet_url], acct.key, [chat(f"mine {i}") for i in range(40)])
        assert all(a["status"] == 200 for a in answers)
        told = sum(a["cost"] for a in answers)
        assert not RequestLog.objects.filter(organization=acct.org).exists(), "nothing written yet"
        headers = {"Authorization": f"Bearer {acct.key}"}
        for url in (other_url, quiet_url):
            assert micro(httpx.get(f"{url}/api/v1/credits", headers=headers).json()["balance"]) == \
                1000 * MICRO - told
            assert micro(httpx.get(f"{url}/api/v1/key", headers=headers).json()["month_to_date_spend"]) == told
        assert_books(acct, 1000 * MICRO, redis_client)
    finally:
        stop_process(quiet)


def test_a_counter_out_of_step_with_the_ledger_is_repaired(pair, make_account, redis_client):
    """The periodic reconciliation proves every counter against the ledger and repairs one that drifted."""
    acct = make_account(credits="100")
    burst(pair, acct.key, [chat("seed the counter")])
    flush_everywhere(pair, acct.key)
    balance = Wallet.objects.get(organization=acct.org).balance
    redis_client.set(spendable_key(acct.org.pk), balance + 500 * MICRO)  # as if a charge had been lost
    wait_for(lambda: int(redis_client.get(spendable_key(acct.org.pk))) == balance, seconds=10,
             what="the counter repaired")


class Door:
    """A TCP proxy in front of a server, on its own thread: ``shut()`` drops every connection and refuses
    new ones (the server as a client sees it when it is down), ``open()`` lets them through again;
    ``hold()`` keeps the server's replies back (a server that stalls), ``release()`` lets them go."""

    def __init__(self, target_port: int) -> None:
        import threading

        self.target_port, self.port = target_port, free_port()
        self.loop = asyncio.new_event_loop()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.replies = asyncio.Event()
        self.replies.set()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.open()

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    gate: asyncio.Event | None = None) -> None:
        try:
            while data := await reader.read(65536):
                if gate is not None:
                    await gate.wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer, self.replies))

    def hold(self) -> None:
        self.loop.call_soon_threadsafe(self.replies.clear)

    def release(self) -> None:
        self.loop.call_soon_threadsafe(self.replies.set)

    def open(self) -> None:
        async def start():
            self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)
        self._run(start())

    def shut(self) -> None:
        async def stop():
            self.server.close()
            for writer in self.writers:
                writer.transport.abort()
            self.writers.clear()
        self._run(stop())

    def close(self) -> None:
        self.shut()
        self.loop.call_soon_threadsafe(self.loop.stop)


def test_postgresql_refusing_connections_serves_seen_keys_and_loses_nothing(fault_models, make_account,
                                                                            redis_client):
    """While PostgreSQL refuses connections, a key seen before keeps being served from what the gateway last
    read (no key cache at all here: every call asks the database first), a key never seen gets 503 with
    Retry-After in its API's shape, and once the database is back every answered call is logged and charged."""
    from django.db import connection

    db = connection.settings_dict
    door = Door(int(db["PORT"] or 5432))
    acct, stranger = make_account(credits="1000"), make_account(credits="1000")
    url, proc = start_gateway(**FAULT_SETTINGS, HYPEREAL_KEY_CACHE_SECONDS="0",
                              DATABASE_URL=f"postgresql://{db['USER']}@127.0.0.1:{door.port}/{db['NAME']}")
    try:
        before = burst([url], acct.key, [chat(f"before {n}") for n in range(5)])
        assert [a["status"] for a in before] == [200] * 5
        door.shut()
        during = burst([url], acct.key, [chat(f"during {n}", stream=n % 2 == 0) for n in range(20)])
        assert [a["status"] for a in during] == [200] * 20, "served from the last good key and catalog"
        unseen = httpx.post(f"{url}/v1/messages", headers={"x-api-key": stranger.key},
                            json={"model": CHEAP, "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]})
        assert unseen.status_code == 503 and unseen.headers["retry-after"].isdigit()
        assert unseen.json()["type"] == "error" and unseen.json()["error"]["type"] == "service_unavailable"
        door.open()
        answered = {a["id"]: a["cost"] for a in before + during}
        wait_for(lambda: dict(RequestLog.objects.filter(request_id__in=answered).values_list("request_id", "cost"))
                 == answered, seconds=30, what="every call answered during the outage logged at its cost")
        # Connections that died idle during the outage are replaced before use: no call fails on one.
        headers = {"Authorization": f"Bearer {acct.key}"}
        with ThreadPoolExecutor(8) as pool:
            reads = list(pool.map(lambda _: httpx.get(f"{url}/api/v1/credits", headers=headers).status_code, range(8)))
        assert reads == [200] * 8
        flush_everywhere([url], acct.key)
        assert_books(acct, 1000 * MICRO, redis_client)
    finally:
        stop_process(proc)
        door.close()


def test_a_streams_last_event_waits_for_its_charge_to_be_journaled(fault_models, make_account, redis_client):
    """[DONE], where SDKs stop reading, goes out only once the journal entry that makes the charge survive a
    crash is written: with Redis's replies held at the end of a stream, the client has every word but not
    the end, and gets it once they flow again."""
    import queue
    import threading

    door = Door(urlsplit(FAULT_REDIS_URL).port or 6379)
    acct = make_account(credits="100")
    url, proc = start_gateway(REDIS_URL=f"redis://127.0.0.1:{door.port}{urlsplit(FAULT_REDIS_URL).path}",
                              HYPEREAL_MIN_BALANCE_CREDITS="0")  # the default lease: a held reply is no death
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        with httpx.stream("POST", f"{url}/api/v1/chat/completions", headers={"Authorization": f"Bearer {acct.key}"},
                          json={**chat("the end waits", stream=True, words=6, chunk_delay_ms=100),
                                "stream_options": {"include_usage": True}}, timeout=30) as resp:
            for line in resp.iter_lines():
                if line:
                    lines.put(line)
        lines.put(None)  # the response ended

    reader = threading.Thread(target=read, daemon=True)
    try:
        reader.start()
        assert lines.get(timeout=10).startswith("data: {")  # the call is under way: its reservation is taken
        door.hold()
        seen = [lines.get(timeout=10)]
        while '"usage":{' not in seen[-1]:  # every word, the finish and the usage, as they come
            seen.append(lines.get(timeout=10))
        with pytest.raises(queue.Empty):
            lines.get(timeout=1)  # no [DONE] while the journal write is unanswered
        door.release()
        assert lines.get(timeout=10) == "data: [DONE]" and lines.get(timeout=10) is None
        reader.join(10)
        flush_everywhere([url], acct.key)
        usage = json.loads(seen[-1][len("data: "):])["usage"]
        assert RequestLog.objects.get(organization=acct.org).cost == micro(usage["cost"])
    finally:
        door.release()
        stop_process(proc)
        door.close()
