"""The storage endpoints of the model API, /api/v1/storage (mirrored under /v1); GpuConfig.ready() routes them.

Authenticated with the caller's ck_ key and scoped to its organization: another organization's file answers
404, exactly like an unknown id. Hypereal-signed URLs (downloads, and uploads on a local filesystem) work
without a key. Errors come in OpenAI's shape with x-request-id. Whatever moves object bytes or talks to the
store runs off the event loop on the gpu app's own pool (gpu.work).
"""

import functools
import logging
import mimetypes
from collections.abc import Callable
from datetime import datetime
from urllib.parse import parse_qs

from django.conf import settings
from django.utils.http import content_disposition_header
from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header

from gateway.auth import KeyContext, authenticate
from gateway.call import Call
from gateway.db import run_db
from gateway.errors import GatewayError, invalid_request
from gateway.http import (
    Receive,
    Scope,
    Send,
    TrackedSend,
    encode_headers,
    header,
    parse_json_object,
    read_body,
    send_json,
)
from gpu.models import StoredFile
from gpu.storage import (
    CHUNK_BYTES,
    FileTooLarge,
    Spool,
    StorageRefusal,
    content_type_normalise,
    downloads_redirect,
    max_bytes,
    max_bytes_any_kind,
    stored_file_delete,
    stored_file_get,
    stored_file_get_unscoped,
    stored_file_open,
    stored_file_save,
    stored_file_upload_complete,
    stored_file_upload_receive,
    stored_file_upload_start,
    stored_file_url,
    stored_files_list,
    url_signature_valid,
)
from gpu.work import off_loop

log = logging.getLogger(__name__)
FIELD_MAX_BYTES = 1024  # a text field of the form (kind, filename)
FORM_OVERHEAD_BYTES = 64 * 1024  # what a form carries besides the file, for the early Content-Length check
LIST_LIMIT, LIST_LIMIT_MAX = 20, 100
# The API parameter each storage field is called by (StorageRefusal.field), per request shape.
FORM_PARAMS = {"content_type": "file", "size": "file", "content": "file"}
UPLOAD_PARAMS = {"content_type": "contentType", "size": "bytes", "content": "contentType"}


def _endpoint(params: dict[str, str] | None = None):
    """Give a handler its Call and answer every failure in OpenAI's error shape, never HTML or plain text;
    ``params`` maps storage fields to the parameter names of the handler's request."""
    def wrap(handler):
        @functools.wraps(handler)
        async def serve(scope: Scope, receive: Receive, send: Send, **path) -> None:
            call = Call(endpoint="storage")
            tracked = TrackedSend(send)
            try:
                await handler(call, scope, receive, tracked, **path)
            except Exception as exc:
                if tracked.started:  # mid-body: a response cut short is how HTTP says it is incomplete
                    log.warning("storage response cut short: %r", exc)
                    return
                err = _gateway_error(exc, params or {})
                if err.status != 499:
                    await call.send_openai_error(send, err)
        return serve
    return wrap


def _gateway_error(exc: Exception, params: dict[str, str]) -> GatewayError:
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, StorageRefusal):
        param = params.get(exc.field, exc.field)
        return GatewayError(exc.status, "invalid_request_error", exc.message, exc.code, {"param": param})
    log.exception("storage request failed")
    return GatewayError(500, "server_error", "The storage failed to answer; try again.", "storage_error")


def _not_found(file_id: str) -> GatewayError:
    return GatewayError(404, "invalid_request_error", f"No such file: {file_id}.", "file_not_found", {"param": "id"})


def _query(scope: Scope) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def _file_json(file: StoredFile) -> dict:
    """The file object of every answer, with a fresh download URL (none until a pending upload completes)."""
    url, url_expires_at = stored_file_url(file) if file.status == StoredFile.Status.AVAILABLE else (None, None)
    return {"id": file.public_id, "object": "file", "kind": file.kind, "status": file.status,
            "filename": file.filename, "contentType": file.content_type, "bytes": file.size,
            "sha256": file.sha256 or None, "createdAt": _iso(file.created_at), "expiresAt": _iso(file.expires_at),
            "jobId": file.job_id, "url": url, "urlExpiresAt": _iso(url_expires_at)}


def _found(file: StoredFile | None, file_id: str) -> StoredFile:
    if file is None:
        raise _not_found(file_id)
    return file


def _signature_checked(scope: Scope, *, purpose: str, file_id: str) -> None:
    query = _query(scope)
    if not url_signature_valid(purpose=purpose, file_id=file_id, expires=query.get("expires"),
                               signature=query.get("signature")):
        raise GatewayError(403, "permission_error", "This link's signature is invalid or has expired.",
                           "invalid_signature")


def _declared_length_checked(scope: Scope, *, limit: int, allowance: int = 0) -> None:
    """Refuse at once a body whose Content-Length is already over the limit (chunked bodies are counted)."""
    if (length := header(scope, b"content-length")) and length.isdigit() and int(length) > limit + allowance:
        raise FileTooLarge(limit=limit)


async def _body_feed(receive: Receive, feed: Callable[[bytes], None], spool: Spool) -> None:
    """Read the request body, feeding each chunk as it arrives; the spool writes a megabyte at a time, off the
    loop."""
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise GatewayError(499, "client_disconnected", "The client went away.")
        feed(message.get("body", b""))
        if spool.pending_bytes >= CHUNK_BYTES:
            await off_loop(spool.flush)
        more = message.get("more_body", False)
    await off_loop(spool.flush)


class _Form:
    """A multipart/form-data body parsed by python-multipart as it streams in: the text fields are kept (a
    kilobyte each at most), the `file` part goes into a Spool, counted against the limit as it arrives."""

    def __init__(self, boundary: bytes) -> None:
        self.spool = Spool(limit=max_bytes_any_kind())  # until the kind is known
        self.fields: dict[str, str] = {}
        self.has_file = False
        self.file_name = self.file_type = ""
        self.ended = False
        self._headers: dict[bytes, bytes] = {}
        self._header_name = self._header_value = b""
        self._name = ""
        self._value = bytearray()
        self._in_file = False
        self._parser = MultipartParser(boundary, {
            "on_part_begin": self._part_begin, "on_header_field": self._header_field,
            "on_header_value": self._header_value_data, "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished, "on_part_data": self._part_data,
            "on_part_end": self._part_end, "on_end": self._end})

    def feed(self, chunk: bytes) -> None:
        try:
            self._parser.write(chunk)
        except FormParserError as exc:
            raise invalid_request(f"The multipart body is malformed: {exc}", code="invalid_multipart") from None

    def _part_begin(self) -> None:
        self._headers, self._value, self._in_file = {}, bytearray(), False

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        if self._name == "file":
            if self.has_file:
                raise invalid_request("Send one `file` per request.", code="invalid_multipart", param="file")
            self.has_file = self._in_file = True
            self.file_name = options.get(b"filename", b"").decode("utf-8", "replace")
            self.file_type = self._headers.get(b"content-type", b"").decode("latin-1")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self.spool.feed(data[start:end])
            return
        self._value += data[start:end]
        if len(self._value) > FIELD_MAX_BYTES:
            raise invalid_request(f"The form field `{self._name}` is too long.", param=self._name)

    def _part_end(self) -> None:
        if self._in_file or not self._name:
            return
        try:
            self.fields[self._name] = value = self._value.decode()
        except UnicodeDecodeError:
            raise invalid_request(f"The form field `{self._name}` is not UTF-8.", param=self._name) from None
        if self._name == "kind" and value in StoredFile.Kind.values and not self.spool.size:
            self.spool.limit = max_bytes(value)  # the kind came first: its own limit applies while reading

    def _end(self) -> None:
        self.ended = True

    def claimed_type(self, filename: str) -> str:
        """The part's type; a generic or missing one is guessed from the filename (curl sends
        application/octet-stream for most files), and then checked against the bytes like any other."""
        if content_type_normalise(self.file_type) in ("", "application/octet-stream"):
            return mimetypes.guess_type(filename)[0] or "application/octet-stream"
        return self.file_type


async def _form_read(scope: Scope, receive: Receive) -> _Form:
    content_type, options = parse_options_header(header(scope, b"content-type") or "")
    if content_type != b"multipart/form-data" or not options.get(b"boundary"):
        raise invalid_request("Send multipart/form-data with the fields `file` and `kind`.",
                              code="invalid_content_type")
    form = _Form(options[b"boundary"])
    try:
        _declared_length_checked(scope, limit=form.spool.limit, allowance=FORM_OVERHEAD_BYTES)
        await _body_feed(receive, form.feed, form.spool)
        if not form.ended:
            raise invalid_request("The multipart body ended before its closing boundary.", code="invalid_multipart")
    except BaseException:
        await off_loop(form.spool.close)
        raise
    return form


def _form_save(ctx: KeyContext, form: _Form) -> dict:
    if not form.has_file:
        raise invalid_request("The `file` field is missing.", code="missing_required_parameter", param="file")
    if not (kind := form.fields.get("kind")):
        raise invalid_request("The `kind` field is missing.", code="missing_required_parameter", param="kind")
    filename = form.fields.get("filename") or form.file_name or "file"
    file = stored_file_save(organization_id=ctx.org_id, api_key_id=ctx.key_id, kind=kind, content=form.spool,
                            filename=filename, content_type=form.claimed_type(filename))
    return _file_json(file)


@_endpoint(FORM_PARAMS)
async def file_upload(call: Call, scope: Scope, receive: Receive, send: Send) -> None:
    """POST /storage: multipart/form-data with `file`, `kind` and optionally `filename`."""
    ctx = await authenticate(scope)
    form = await _form_read(scope, receive)
    try:
        answer = await off_loop(_form_save, ctx, form)
    finally:
        await off_loop(form.spool.close)
    await send_json(send, 201, answer, call.headers)


def _list(organization_id: int, kind: str | None, after: str | None, limit: int) -> dict:
    files, has_more = stored_files_list(organization_id=organization_id, kind=kind, after=after, limit=limit)
    return {"object": "list", "data": [_file_json(f) for f in files], "has_more": has_more,
            "first_id": files[0].public_id if files else None, "last_id": files[-1].public_id if files else None}


@_endpoint()
async def files_list(call: Call, scope: Scope, receive: Receive, send: Send) -> None:
    """GET /storage?kind=&limit=&after=: newest first; `after` is the last id of the previous page."""
    ctx = await authenticate(scope)
    query = _query(scope)
    kind = query.get("kind") or None
    if kind is not None and kind not in StoredFile.Kind.values:
        raise invalid_request(f"`kind` must be one of {', '.join(StoredFile.Kind.values)}.", code="invalid_kind",
                              param="kind")
    limit = query.get("limit", str(LIST_LIMIT))
    if not limit.isdigit() or not 1 <= int(limit) <= LIST_LIMIT_MAX:
        raise invalid_request(f"`limit` must be between 1 and {LIST_LIMIT_MAX}.", code="invalid_limit",
                              param="limit")
    answer = await off_loop(_list, ctx.org_id, kind, query.get("after") or None, int(limit))
    await send_json(send, 200, answer, call.headers)


def _retrieve(organization_id: int, file_id: str) -> dict:
    return _file_json(_found(stored_file_get(organization_id=organization_id, file_id=file_id), file_id))


@_endpoint()
async def file_retrieve(call: Call, scope: Scope, receive: Receive, send: Send, file_id: str) -> None:
    """GET /storage/{id}: the file with a fresh download URL."""
    ctx = await authenticate(scope)
    await send_json(send, 200, await off_loop(_retrieve, ctx.org_id, file_id), call.headers)


def _delete(organization_id: int, file_id: str) -> dict:
    file = _found(stored_file_get(organization_id=organization_id, file_id=file_id), file_id)
    stored_file_delete(file=file)
    return {"id": file_id, "object": "file", "deleted": True}


@_endpoint()
async def file_delete(call: Call, scope: Scope, receive: Receive, send: Send, file_id: str) -> None:
    """DELETE /storage/{id}: the object and its row (a pending upload too)."""
    ctx = await authenticate(scope)
    await send_json(send, 200, await off_loop(_delete, ctx.org_id, file_id), call.headers)


@_endpoint()
async def file_content(call: Call, scope: Scope, receive: Receive, send: Send, file_id: str) -> None:
    """GET /storage/{id}/content: with the key, or with a signed URL's `expires` and `signature` instead.
    Streams the bytes from a local filesystem; on S3, redirects to the store's presigned URL."""
    if "signature" in _query(scope):
        _signature_checked(scope, purpose="download", file_id=file_id)
        file = await run_db(stored_file_get_unscoped, file_id=file_id)
    else:
        ctx = await authenticate(scope)
        file = await run_db(stored_file_get, organization_id=ctx.org_id, file_id=file_id)
    file = _found(file, file_id)
    if file.status != StoredFile.Status.AVAILABLE:
        raise GatewayError(409, "invalid_request_error", "This upload has not been completed yet.",
                           "upload_incomplete")
    if downloads_redirect():
        url, _ = await off_loop(stored_file_url, file)
        await send({"type": "http.response.start", "status": 302,
                    "headers": encode_headers({**call.headers, "location": url, "content-length": "0"})})
        return await send({"type": "http.response.body", "body": b""})
    stream = await off_loop(stored_file_open, file)
    try:
        await send({"type": "http.response.start", "status": 200, "headers": encode_headers({
            **call.headers, "content-type": file.content_type, "content-length": str(file.size),
            "content-disposition": content_disposition_header(True, file.filename),
            "x-content-type-options": "nosniff", "cache-control": "private, no-store"})})
        while chunk := await off_loop(stream.read, CHUNK_BYTES):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        await off_loop(stream.close)


def _text_field(body: dict, name: str) -> str:
    value = body.get(name)
    if value is None or value == "":
        raise invalid_request(f"`{name}` is required.", code="missing_required_parameter", param=name)
    if not isinstance(value, str):
        raise invalid_request(f"`{name}` must be a string.", code="invalid_type", param=name)
    return value


def _upload_start(ctx: KeyContext, *, kind: str, filename: str, content_type: str, size: int) -> dict:
    file, target = stored_file_upload_start(organization_id=ctx.org_id, api_key_id=ctx.key_id, kind=kind,
                                            filename=filename, content_type=content_type, size=size)
    return {"id": file.public_id, "object": "upload", "uploadUrl": target.url, "method": target.method,
            "headers": target.headers, "expiresAt": _iso(target.expires_at)}


@_endpoint(UPLOAD_PARAMS)
async def upload_create(call: Call, scope: Scope, receive: Receive, send: Send) -> None:
    """POST /storage/uploads {kind, filename, contentType, bytes}: where to PUT a large file's bytes."""
    ctx = await authenticate(scope)
    body = parse_json_object(await read_body(receive, limit=settings.HYPEREAL["MAX_BODY_BYTES"]))
    kind, filename, content_type = (_text_field(body, name) for name in ("kind", "filename", "contentType"))
    size = body.get("bytes")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise invalid_request("`bytes` must be the file's size: a whole number of bytes.", code="invalid_type",
                              param="bytes")
    answer = await off_loop(_upload_start, ctx, kind=kind, filename=filename, content_type=content_type, size=size)
    await send_json(send, 201, answer, call.headers)


@_endpoint(UPLOAD_PARAMS)
async def upload_receive(call: Call, scope: Scope, receive: Receive, send: Send, file_id: str) -> None:
    """PUT /storage/{id}/upload?expires=&signature=: the bytes of a presigned upload, on a local filesystem."""
    _signature_checked(scope, purpose="upload", file_id=file_id)
    file = _found(await run_db(stored_file_get_unscoped, file_id=file_id), file_id)
    if content_type_normalise(header(scope, b"content-type") or "") != file.content_type:
        raise invalid_request(f"Send the Content-Type this upload was created with: {file.content_type}.",
                              code="content_type_mismatch", param="Content-Type")
    _declared_length_checked(scope, limit=file.size)
    spool = Spool(limit=file.size)
    try:
        await _body_feed(receive, spool.feed, spool)
        await off_loop(stored_file_upload_receive, file=file, spool=spool)
    finally:
        await off_loop(spool.close)
    await send_json(send, 200, {"id": file.public_id, "object": "upload", "bytes": spool.size,
                                "sha256": spool.sha256}, call.headers)


def _complete(organization_id: int, file_id: str) -> dict:
    file = _found(stored_file_get(organization_id=organization_id, file_id=file_id), file_id)
    return _file_json(stored_file_upload_complete(file=file))


@_endpoint(UPLOAD_PARAMS)
async def upload_complete(call: Call, scope: Scope, receive: Receive, send: Send, file_id: str) -> None:
    """POST /storage/{id}/complete: check the uploaded object and make the file available."""
    ctx = await authenticate(scope)
    await send_json(send, 200, await off_loop(_complete, ctx.org_id, file_id), call.headers)


@_endpoint()
async def unknown_path(call: Call, scope: Scope, receive: Receive, send: Send, **_) -> None:
    raise GatewayError(404, "invalid_request_error", f"Unknown storage endpoint: {scope['path']}.", "not_found")
