"""The services the job engine calls, and retention, run in this process against each store the gateways use."""

import hashlib
import io
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from gpu.models import StoredFile
from gpu.storage import FileTooLarge, StorageRefusal, stored_file_get, stored_file_save, stored_file_url
from gpu.tasks import stored_files_expire

OUTPUT = b'{"frames": 48}\n' * 1000


def output_save(account, content, **extra) -> StoredFile:
    return stored_file_save(organization_id=account.org.pk, kind="output", content=content, filename="result.json",
                            content_type="application/json", **extra)


@pytest.mark.parametrize("content", [
    lambda: OUTPUT,
    lambda: io.BytesIO(OUTPUT),
    lambda: (OUTPUT[i:i + 1000] for i in range(0, len(OUTPUT), 1000)),  # e.g. httpx's response.iter_bytes()
], ids=["bytes", "file", "chunks"])
def test_the_job_engine_saves_bytes_a_file_or_chunks(store, in_process, make_account, content):
    in_process(store)
    account = make_account()
    file = output_save(account, content(), job_id="job_123")
    assert (file.status, file.size, file.job_id) == ("available", len(OUTPUT), "job_123")
    assert file.sha256 == hashlib.sha256(OUTPUT).hexdigest()
    assert abs(file.expires_at - timezone.now() - timedelta(days=30)) < timedelta(minutes=1)  # output retention
    assert store.object_bytes(f"org_{account.org.pk}/output/{file.public_id}/result.json") == OUTPUT
    assert stored_file_get(organization_id=account.org.pk, file_id=file.public_id) == file
    url, expires_at = stored_file_url(file)
    assert httpx.get(url, follow_redirects=True).content == OUTPUT
    assert timedelta(minutes=59) < expires_at - timezone.now() <= timedelta(hours=1)


def test_a_refused_save_stores_nothing(fs_store, in_process, make_account, settings):
    in_process(fs_store)
    settings.HYPEREAL_STORAGE = {**settings.HYPEREAL_STORAGE,
                                 "MAX_BYTES": {**settings.HYPEREAL_STORAGE["MAX_BYTES"], "output": 100}}
    account = make_account()
    with pytest.raises(FileTooLarge):
        output_save(account, iter([b"a" * 60, b"a" * 60]))
    with pytest.raises(StorageRefusal) as refusal:
        stored_file_save(organization_id=account.org.pk, kind="output", content=b"GIF89a", filename="a.png",
                         content_type="image/png")
    assert (refusal.value.code, refusal.value.field) == ("content_type_mismatch", "content")
    assert not StoredFile.objects.filter(organization=account.org).exists()
    assert not (fs_store.root / f"org_{account.org.pk}").exists()


def test_retention_deletes_expired_files_and_abandoned_uploads(store, in_process, make_account):
    in_process(store)
    account = make_account()
    expired, kept = output_save(account, OUTPUT), output_save(account, OUTPUT)
    forever = stored_file_save(organization_id=account.org.pk, kind="weights", content=b"\x00" * 10,
                               filename="model.safetensors", content_type="application/octet-stream")
    assert forever.expires_at is None  # weights are kept until deleted
    abandoned = StoredFile.objects.create(organization=account.org, kind="input", status="pending",
                                          filename="never.png", content_type="image/png", size=10,
                                          storage_name=f"org_{account.org.pk}/input/none/never.png",
                                          expires_at=timezone.now() - timedelta(seconds=1))
    StoredFile.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert stored_files_expire() == 2  # the beat task, called in process
    remaining = set(StoredFile.objects.filter(organization=account.org).values_list("pk", flat=True))
    assert remaining == {kept.pk, forever.pk} and abandoned.pk not in remaining
    assert store.object_bytes(expired.storage_name) is None
    assert store.object_bytes(kept.storage_name) == OUTPUT
