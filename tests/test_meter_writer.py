"""The metering writer process: batches are committed by a child process, which is replaced if it dies."""

import os
import signal
import uuid

import httpx
import pytest
from django.utils import timezone

from billing.models import LedgerEntry
from billing.tokens import TokenUsage
from gateway.meter_writer import MeterWriteError, MeterWriter
from gateway.metering import record_dumps
from tests.live import gateway_env, start_gateway, stop_process, wait_for
from usage.models import RequestLog
from usage.services import CallRecord


@pytest.fixture
def writer(committed_db, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", gateway_env()["DATABASE_URL"])  # the child writes where the test reads
    writer = MeterWriter()
    yield writer
    writer.stop()


def calls(account, n: int, organization_id: int | None = None) -> list[CallRecord]:
    return [CallRecord(request_id=f"req_mw_{uuid.uuid4().hex}", organization_id=organization_id or account.org.pk,
                       api_key_id=account.key_id, endpoint="chat.completions", model="gpt-5.5", provider="sim",
                       upstream_model="gpt-5.5", status=200, latency_ms=3, usage=TokenUsage(input=10, output=20),
                       cost=1_000, created_at=timezone.now()) for _ in range(n)]


def journaled(records: list[CallRecord]) -> list[bytes]:
    """The records as the gateway hands them to its writer: their journal bytes."""
    return [record_dumps(record) for record in records]


def test_a_batch_is_committed_by_the_child_before_write_returns(writer, account):
    batch = calls(account, 3)
    writer.write(journaled(batch), {})
    ids = [r.request_id for r in batch]
    assert RequestLog.objects.filter(request_id__in=ids).count() == 3
    assert LedgerEntry.objects.filter(reference__in=ids, kind=LedgerEntry.Kind.CHARGE).count() == 3


def test_a_writer_that_died_is_replaced_and_the_batch_written_once(writer, account):
    writer.write(journaled(calls(account, 1)), {})
    os.kill(writer._process.pid, signal.SIGKILL)
    writer._process.join(10)
    batch = calls(account, 2)
    writer.write(journaled(batch), {})
    writer.write(journaled(batch), {})  # sent again, as after a crash mid-batch: logged and charged once
    ids = [r.request_id for r in batch]
    assert RequestLog.objects.filter(request_id__in=ids).count() == 2
    assert LedgerEntry.objects.filter(reference__in=ids).count() == 2


def test_a_batch_the_database_refuses_is_reported_and_the_writer_goes_on(writer, account):
    with pytest.raises(MeterWriteError, match="IntegrityError"):
        writer.write(journaled(calls(account, 1, organization_id=10**9)), {})  # no such organization
    batch = calls(account, 1)
    writer.write(journaled(batch), {})
    assert RequestLog.objects.filter(request_id=batch[0].request_id).exists()


def test_a_gateway_writes_its_calls_once_enough_are_queued(demo_catalog, make_account):
    """A flush starts when HYPEREAL_METER_FLUSH_CALLS calls wait, not only every HYPEREAL_METER_FLUSH_MS (ten
    minutes here): small batches keep each write's burst of database work short."""
    acct = make_account(credits="1000")
    url, proc = start_gateway(HYPEREAL_METER_FLUSH_MS="600000", HYPEREAL_METER_FLUSH_CALLS="3")
    headers = {"Authorization": f"Bearer {acct.key}"}
    try:
        def answered() -> str:
            resp = httpx.post(f"{url}/api/v1/chat/completions", headers=headers,
                              json={"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]})
            assert resp.status_code == 200
            return resp.headers["x-request-id"]

        ids = [answered(), answered()]
        assert not RequestLog.objects.filter(request_id__in=ids).exists(), "two calls wait for a third"
        ids.append(answered())
        wait_for(lambda: RequestLog.objects.filter(request_id__in=ids).count() == 3, seconds=10,
                 what="the three calls written")
        assert LedgerEntry.objects.filter(reference__in=ids, kind=LedgerEntry.Kind.CHARGE).count() == 3
    finally:
        stop_process(proc)
