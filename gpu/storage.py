"""Files of an organization's jobs (inputs, outputs, datasets, weights), kept in the "hypereal" storage.

Services write, selectors read; all are sync Django, and the HTTP handlers (gpu/files_api.py) run them off the
event loop. Objects are keyed ``org_<id>/<kind>/<file id>/<filename>``. The local filesystem and S3-compatible
stores share one code path except for presigned flows: where a URL is signed (downloads, uploads) and where a
client's upload is read back.
"""

import hashlib
import logging
import time
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import BinaryIO
from urllib.parse import urlencode

from django.conf import settings
from django.core.files.storage import Storage, storages
from django.core.files.uploadedfile import TemporaryUploadedFile
from django.db.models import Q
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac
from django.utils.http import content_disposition_header
from storages.backends.s3 import S3Storage
from storages.utils import safe_join

from gpu.models import StoredFile

log = logging.getLogger(__name__)
CHUNK_BYTES = 1024 * 1024
HEAD_BYTES = 64  # enough for every signature in SIGNATURES
MAX_FILENAME_BYTES = 200  # under the 255-byte name limit of common filesystems, with room for a suffix
UPLOAD_GRACE = timedelta(days=1)  # a presigned upload can still be completed this long after its URL expired

_MEDIA = {"image/png", "image/jpeg", "image/webp", "image/gif", "video/mp4", "video/webm", "video/quicktime",
          "audio/mpeg", "audio/wav", "audio/ogg", "audio/flac", "audio/mp4"}
_ARCHIVES = {"application/zip", "application/gzip", "application/x-tar"}
ALLOWED_CONTENT_TYPES: dict[str, set[str]] = {
    "input": _MEDIA | {"application/json", "text/plain", "application/pdf", "application/zip"},
    "output": _MEDIA | _ARCHIVES | {"application/json", "text/plain", "application/octet-stream"},
    "dataset": _ARCHIVES | {"application/json", "application/x-ndjson", "application/jsonl", "text/csv",
                            "text/plain", "application/vnd.apache.parquet", "application/octet-stream"},
    "weights": _ARCHIVES | {"application/octet-stream"},  # safetensors, GGUF, checkpoints
}
_ALIASES = {"image/jpg": "image/jpeg", "audio/x-wav": "audio/wav", "audio/wave": "audio/wav", "audio/mp3": "audio/mpeg",
            "audio/x-flac": "audio/flac", "application/x-gzip": "application/gzip"}


def _iso_bmff(head: bytes) -> bool:  # MP4, M4A, MOV: a box whose type is "ftyp"
    return head[4:8] == b"ftyp"


# What the first bytes of a file of each type look like; types without an entry are not checked.
SIGNATURES: dict[str, Callable[[bytes], bool]] = {
    "image/png": lambda h: h.startswith(b"\x89PNG\r\n\x1a\n"),
    "image/jpeg": lambda h: h.startswith(b"\xff\xd8\xff"),
    "image/gif": lambda h: h[:6] in (b"GIF87a", b"GIF89a"),
    "image/webp": lambda h: h[:4] == b"RIFF" and h[8:12] == b"WEBP",
    "video/mp4": _iso_bmff,
    "audio/mp4": _iso_bmff,
    "video/quicktime": lambda h: h[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free"),  # old MOVs lack ftyp
    "video/webm": lambda h: h.startswith(b"\x1a\x45\xdf\xa3"),  # EBML
    "audio/wav": lambda h: h[:4] == b"RIFF" and h[8:12] == b"WAVE",
    "audio/mpeg": lambda h: h.startswith(b"ID3") or (len(h) > 1 and h[0] == 0xFF and h[1] & 0xE0 == 0xE0),
    "audio/ogg": lambda h: h.startswith(b"OggS"),
    "audio/flac": lambda h: h.startswith(b"fLaC"),
    "application/pdf": lambda h: h.startswith(b"%PDF-"),
    "application/zip": lambda h: h[:4] in (b"PK\x03\x04", b"PK\x05\x06"),  # the second: an empty archive
    "application/gzip": lambda h: h.startswith(b"\x1f\x8b"),
}


def media_type_of(head: bytes) -> str | None:
    """The image type the first bytes of a file say it is (None: not an image we know)."""
    return next((kind for kind, matches in SIGNATURES.items() if kind.startswith("image/") and matches(head)), None)


class StorageRefusal(Exception):
    """A file or request the storage refuses. ``field`` says what was wrong (kind, content_type, size,
    content, after) so that each API names its own parameter; ``status`` is the HTTP status it answers."""

    def __init__(self, message: str, *, code: str, field: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.code, self.field, self.status = message, code, field, status


class FileTooLarge(StorageRefusal):
    def __init__(self, *, limit: int) -> None:
        super().__init__(f"The file exceeds the limit of {limit} bytes.", code="file_too_large", field="size",
                         status=413)


class Spool:
    """A file on its way in. Chunks are fed as they arrive and counted against ``limit`` at once (no I/O, fine
    on the event loop); flush() hashes them and writes them to a temporary file (blocking: off the loop). The
    first bytes are kept for the signature check, so the bytes are read only once, and a filesystem storage
    on the same disk moves the temporary file into place instead of copying it."""

    def __init__(self, *, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.head = b""
        self.pending_bytes = 0
        self._pending: list[bytes] = []
        self._sha256 = hashlib.sha256()
        self._file: TemporaryUploadedFile | None = None

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise FileTooLarge(limit=self.limit)
        if len(self.head) < HEAD_BYTES:
            self.head += chunk[:HEAD_BYTES - len(self.head)]
        self._pending.append(chunk)
        self.pending_bytes += len(chunk)

    def flush(self) -> None:
        if self._file is None:
            self._file = TemporaryUploadedFile("upload", "application/octet-stream", 0, None)
        for chunk in self._pending:
            self._sha256.update(chunk)
            self._file.write(chunk)
        self._pending.clear()
        self.pending_bytes = 0

    def write(self, chunk: bytes) -> None:
        """Feed and flush at once, for sync callers (the job engine)."""
        self.feed(chunk)
        self.flush()

    def finished(self) -> TemporaryUploadedFile:
        """The whole file, written out."""
        self.flush()
        self._file.flush()
        self._file.size = self.size
        return self._file

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()

    def close(self) -> None:
        """Remove the temporary file (unless a storage moved it into place)."""
        if self._file is not None:
            self._file.close()


def file_storage() -> Storage:
    return storages["hypereal"]


def _is_s3(storage: Storage) -> bool:
    return isinstance(storage, S3Storage)


def downloads_redirect() -> bool:
    """Whether key holders are redirected to the store's own presigned URL instead of being served the bytes."""
    return _is_s3(file_storage())


def max_bytes(kind: str) -> int:
    return settings.HYPEREAL_STORAGE["MAX_BYTES"][kind]


def max_bytes_any_kind() -> int:
    return max(settings.HYPEREAL_STORAGE["MAX_BYTES"].values())


def kind_checked(kind: str) -> str:
    if kind not in StoredFile.Kind.values:
        raise StorageRefusal(f"The kind must be one of {', '.join(StoredFile.Kind.values)}.", code="invalid_kind",
                             field="kind")
    return kind


def content_type_normalise(value: str) -> str:
    essence = value.split(";", 1)[0].strip().lower()  # parameters such as charset do not change the type
    return _ALIASES.get(essence, essence)


def content_type_checked(*, kind: str, content_type: str) -> str:
    normal = content_type_normalise(content_type)
    if normal not in ALLOWED_CONTENT_TYPES[kind]:
        allowed = ", ".join(sorted(ALLOWED_CONTENT_TYPES[kind]))
        raise StorageRefusal(f"{kind} files cannot be {normal or 'untyped'}; allowed: {allowed}.",
                             code="unsupported_content_type", field="content_type")
    return normal


def _bytes_checked(*, head: bytes, content_type: str) -> None:
    if (matches := SIGNATURES.get(content_type)) and not matches(head):
        raise StorageRefusal(f"The file's bytes are not {content_type}.", code="content_type_mismatch",
                             field="content")


def filename_sanitise(raw: str) -> str:
    """A display name that is safe as the last segment of an object key: no directories, no control or
    format characters, no leading dots, at most MAX_FILENAME_BYTES of UTF-8 (the extension kept)."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = " ".join(name.split()).lstrip(". ")
    stem, dot, ext = name.rpartition(".")
    if not dot or len(ext) > 16:
        stem, dot, ext = name, "", ""
    budget = MAX_FILENAME_BYTES - len((dot + ext).encode())
    stem = stem.encode()[:budget].decode(errors="ignore")  # never cut a character in half
    return (stem + dot + ext).strip() or "file"


def _retention_end(kind: str) -> datetime | None:
    days = settings.HYPEREAL_STORAGE["RETENTION_DAYS"][kind]
    return timezone.now() + timedelta(days=days) if days > 0 else None


def _object_name(file: StoredFile) -> str:
    return f"org_{file.organization_id}/{file.kind}/{file.public_id}/{file.filename}"


def _s3_key(storage: S3Storage, name: str) -> str:
    return safe_join(storage.location, name)  # the bucket key: the name under the configured prefix


def _spooled(content: bytes | BinaryIO | Iterable[bytes], *, limit: int) -> Spool:
    spool = Spool(limit=limit)
    try:
        if isinstance(content, bytes | bytearray):
            spool.write(bytes(content))
        elif hasattr(content, "read"):
            for chunk in iter(partial(content.read, CHUNK_BYTES), b""):
                spool.write(chunk)
        else:
            for chunk in content:
                spool.write(chunk)
    except BaseException:
        spool.close()
        raise
    return spool


def _object_write(storage: Storage, file: StoredFile, spool: Spool) -> str:
    content = spool.finished()
    content.content_type = file.content_type  # S3 stores the object with it
    return storage.save(file.storage_name, content)


def stored_file_save(*, organization_id: int, kind: str, content: bytes | BinaryIO | Iterable[bytes] | Spool,
                     filename: str, content_type: str, api_key_id: int | None = None,
                     job_id: str | None = None) -> StoredFile:
    """Check and store a file of an organization; it is available at once, until its kind's retention ends.

    ``content`` is bytes, a binary file object (read from where it stands), or an iterable of byte chunks
    such as httpx's ``response.iter_bytes()``: it is read once, a chunk at a time, never whole in memory.
    A Spool (the upload endpoint's) is taken as already read. Raises StorageRefusal for an unknown kind, a
    content type the kind does not allow or that the bytes contradict, and FileTooLarge over the kind's limit.
    """
    kind = kind_checked(kind)
    content_type = content_type_checked(kind=kind, content_type=content_type)
    limit = max_bytes(kind)
    spool = content if isinstance(content, Spool) else _spooled(content, limit=limit)
    try:
        spool.finished()
        if spool.size > limit:
            raise FileTooLarge(limit=limit)
        _bytes_checked(head=spool.head, content_type=content_type)
        file = StoredFile(organization_id=organization_id, api_key_id=api_key_id, job_id=job_id, kind=kind,
                          filename=filename_sanitise(filename), content_type=content_type, size=spool.size,
                          sha256=spool.sha256, expires_at=_retention_end(kind))
        file.storage_name = _object_name(file)
        storage = file_storage()
        file.storage_name = _object_write(storage, file, spool)
        try:
            file.save()
        except BaseException:
            storage.delete(file.storage_name)  # no object without its row
            raise
        return file
    finally:
        if spool is not content:
            spool.close()


def url_signature(*, purpose: str, file_id: str, expires: int) -> str:
    """HMAC-SHA256, keyed from SECRET_KEY, of what a Hypereal-signed URL grants: ``purpose`` (download or
    upload) of one file until ``expires`` (unix time)."""
    return salted_hmac(f"gpu.storage.{purpose}", f"{file_id}:{expires}", algorithm="sha256").hexdigest()


def url_signature_valid(*, purpose: str, file_id: str, expires: str | None, signature: str | None) -> bool:
    if not expires or not expires.isdigit() or not signature:
        return False
    expected = url_signature(purpose=purpose, file_id=file_id, expires=int(expires))
    return constant_time_compare(signature, expected) and int(expires) >= time.time()


def _hypereal_signed_url(file: StoredFile, *, purpose: str, path: str) -> tuple[str, datetime]:
    expires = int(time.time()) + settings.HYPEREAL_STORAGE["URL_SECONDS"]
    query = urlencode({"expires": expires,
                       "signature": url_signature(purpose=purpose, file_id=file.public_id, expires=expires)})
    return (f"{settings.PUBLIC_URL}/api/v1/storage/{file.public_id}/{path}?{query}",
            datetime.fromtimestamp(expires, UTC))


def stored_file_url(file: StoredFile) -> tuple[str, datetime]:
    """A download URL that works without a key until the returned time: presigned by the S3 store, or signed by
    Hypereal and served at /api/v1/storage/{id}/content."""
    storage = file_storage()
    if not _is_s3(storage):
        return _hypereal_signed_url(file, purpose="download", path="content")
    lifetime = settings.HYPEREAL_STORAGE["URL_SECONDS"]
    expires_at = datetime.fromtimestamp(int(time.time()) + lifetime, UTC)  # S3 counts from the signing second
    url = storage.url(file.storage_name, expire=lifetime,
                      parameters={"ResponseContentDisposition": content_disposition_header(True, file.filename)})
    return url, expires_at


@dataclass(frozen=True, slots=True)
class UploadTarget:
    url: str
    method: str
    headers: dict[str, str]  # to send with the bytes: a PUT with another Content-Type is refused
    expires_at: datetime


def stored_file_upload_start(*, organization_id: int, kind: str, filename: str, content_type: str, size: int,
                             api_key_id: int | None = None, job_id: str | None = None,
                             ) -> tuple[StoredFile, UploadTarget]:
    """Reserve a file whose bytes the client PUTs to the returned target: the S3 store itself, or Hypereal on a
    local filesystem. It stays pending (listed nowhere, no URL) until stored_file_upload_complete."""
    kind = kind_checked(kind)
    content_type = content_type_checked(kind=kind, content_type=content_type)
    if size > max_bytes(kind):
        raise FileTooLarge(limit=max_bytes(kind))
    url_seconds = timedelta(seconds=settings.HYPEREAL_STORAGE["URL_SECONDS"])
    file = StoredFile(organization_id=organization_id, api_key_id=api_key_id, job_id=job_id, kind=kind,
                      status=StoredFile.Status.PENDING, filename=filename_sanitise(filename),
                      content_type=content_type, size=size, expires_at=timezone.now() + url_seconds + UPLOAD_GRACE)
    file.storage_name = _object_name(file)
    target = _upload_target(file)
    file.save()
    return file, target


def _upload_target(file: StoredFile) -> UploadTarget:
    storage = file_storage()
    headers = {"Content-Type": file.content_type}
    if not _is_s3(storage):
        url, expires_at = _hypereal_signed_url(file, purpose="upload", path="upload")
        return UploadTarget(url=url, method="PUT", headers=headers, expires_at=expires_at)
    lifetime = settings.HYPEREAL_STORAGE["URL_SECONDS"]
    expires_at = datetime.fromtimestamp(int(time.time()) + lifetime, UTC)
    # Content-Type and Content-Length are signed: the store refuses a PUT of another type or size.
    url = storage.connection.meta.client.generate_presigned_url(
        "put_object", HttpMethod="PUT", ExpiresIn=lifetime,
        Params={"Bucket": storage.bucket_name, "Key": _s3_key(storage, file.storage_name),
                "ContentType": file.content_type, "ContentLength": file.size})
    return UploadTarget(url=url, method="PUT", headers=headers, expires_at=expires_at)


def stored_file_upload_receive(*, file: StoredFile, spool: Spool) -> None:
    """Store the bytes PUT to a Hypereal-signed upload URL (local filesystem), replacing an earlier PUT."""
    if file.status != StoredFile.Status.PENDING:
        raise StorageRefusal("This upload was already completed.", code="upload_completed", status=409)
    if spool.size != file.size:
        raise StorageRefusal(f"The upload has {spool.size} bytes, not the {file.size} declared.",
                             code="upload_size_mismatch", field="size")
    _bytes_checked(head=spool.head, content_type=file.content_type)
    storage = file_storage()
    storage.delete(file.storage_name)  # else the storage would pick another name
    _object_write(storage, file, spool)


def stored_file_upload_complete(*, file: StoredFile) -> StoredFile:
    """Make a pending upload available once its object exists with the declared size and its bytes match the
    declared type. The object is read back once, to check its signature and take its SHA-256. Completing a
    completed upload returns it unchanged."""
    if file.status == StoredFile.Status.AVAILABLE:
        return file
    if file.expires_at <= timezone.now():
        raise StorageRefusal("This upload has expired; start a new one.", code="upload_expired")
    storage = file_storage()
    try:
        size = storage.size(file.storage_name)
    except FileNotFoundError:
        raise StorageRefusal("Nothing was uploaded yet: PUT the bytes to the uploadUrl first.",
                             code="upload_incomplete") from None
    if size != file.size:
        raise StorageRefusal(f"The upload has {size} bytes, not the {file.size} declared.",
                             code="upload_size_mismatch", field="size")
    head, sha256 = _object_digest(storage, file.storage_name)
    _bytes_checked(head=head, content_type=file.content_type)
    StoredFile.objects.filter(pk=file.pk, status=StoredFile.Status.PENDING).update(
        status=StoredFile.Status.AVAILABLE, sha256=sha256, expires_at=_retention_end(file.kind))
    file.refresh_from_db()
    return file


def _object_stream(storage: Storage, name: str) -> BinaryIO:
    if _is_s3(storage):  # S3File would first download the whole object into memory
        return storage.connection.meta.client.get_object(Bucket=storage.bucket_name,
                                                         Key=_s3_key(storage, name))["Body"]
    return storage.open(name, "rb")


def _object_digest(storage: Storage, name: str) -> tuple[bytes, str]:
    head, digest = b"", hashlib.sha256()
    with _object_stream(storage, name) as stream:
        while chunk := stream.read(CHUNK_BYTES):
            if len(head) < HEAD_BYTES:
                head += chunk[:HEAD_BYTES - len(head)]
            digest.update(chunk)
    return head, digest.hexdigest()


def stored_file_open(file: StoredFile) -> BinaryIO:
    """The file's bytes as a stream, to read a chunk at a time."""
    return _object_stream(file_storage(), file.storage_name)


def stored_file_delete(*, file: StoredFile) -> None:
    """The object first, then the row: a failed object delete leaves the row to try again, never an orphan."""
    file_storage().delete(file.storage_name)
    file.delete()


def stored_files_delete(*, files: Iterable[StoredFile]) -> int:
    count = 0
    for file in files:
        stored_file_delete(file=file)
        count += 1
    return count


def stored_files_delete_expired(*, batch_size: int = 500) -> int:
    """Delete the files past their expires_at (objects, then rows), a batch at a time. A file whose object
    cannot be deleted is logged and kept for the next run. Returns how many were deleted."""
    storage, now = file_storage(), timezone.now()
    deleted, failed = 0, set()
    while batch := list(StoredFile.objects.filter(expires_at__lte=now).exclude(pk__in=failed)
                        .order_by("expires_at")[:batch_size]):
        done = []
        for file in batch:
            try:
                storage.delete(file.storage_name)
            except Exception:
                log.exception("could not delete the object of %s; kept for the next run", file.public_id)
                failed.add(file.pk)
            else:
                done.append(file.pk)
        deleted += StoredFile.objects.filter(pk__in=done).delete()[0]
    return deleted


def stored_file_get(*, organization_id: int, file_id: str) -> StoredFile | None:
    """An organization's file; another organization's is None, exactly like an unknown id."""
    return StoredFile.objects.filter(organization_id=organization_id, public_id=file_id).first()


def stored_file_get_unscoped(*, file_id: str) -> StoredFile | None:
    """A file by id alone: only for a request that carries a valid Hypereal signature for that id."""
    return StoredFile.objects.filter(public_id=file_id).first()


def stored_files_list(*, organization_id: int, kind: str | None = None, after: str | None = None,
                      limit: int = 20) -> tuple[list[StoredFile], bool]:
    """An organization's available files, newest first, after the cursor file if given; and whether more follow."""
    rows = StoredFile.objects.filter(organization_id=organization_id, status=StoredFile.Status.AVAILABLE)
    if kind:
        rows = rows.filter(kind=kind)
    if after:
        cursor = rows.filter(public_id=after).values("created_at", "pk").first()
        if cursor is None:
            raise StorageRefusal("`after` must be the id of a file in this list.", code="invalid_cursor",
                                 field="after")
        rows = rows.filter(Q(created_at__lt=cursor["created_at"]) | Q(created_at=cursor["created_at"],
                                                                      pk__lt=cursor["pk"]))
    page = list(rows.order_by("-created_at", "-pk")[:limit + 1])
    return page[:limit], len(page) > limit
