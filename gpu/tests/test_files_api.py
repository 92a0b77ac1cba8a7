"""/api/v1/storage over real HTTP, against a gateway on the local filesystem and one on S3 (moto's server)."""

import hashlib
import io
import time
from datetime import datetime, timedelta

import httpx
import pytest
from PIL import Image

from gpu.storage import url_signature
from gpu.tests.conftest import INPUT_MAX_BYTES, S3_CREDENTIALS, S3_REGION, storage_gateway_start
from tests.live import stop_process


def png_bytes(color: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(out, "PNG")
    return out.getvalue()


def auth(account) -> dict[str, str]:
    return {"Authorization": f"Bearer {account.key}"}


def upload(store, account, content: bytes, *, kind: str = "input", filename: str = "cat.png",
           content_type: str = "image/png", **fields: str) -> httpx.Response:
    return httpx.post(f"{store.url}/api/v1/storage", headers=auth(account), data={"kind": kind, **fields},
                      files={"file": (filename, content, content_type)})


def presign(store, account, **body) -> httpx.Response:
    return httpx.post(f"{store.url}/api/v1/storage/uploads", headers=auth(account),
                      json={"kind": "input", "filename": "big.png", "contentType": "image/png", **body})


def parsed(moment: str) -> datetime:
    return datetime.fromisoformat(moment)


def assert_error(resp: httpx.Response, status: int, code: str, param: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json" and resp.headers["x-request-id"].startswith("req_")
    error = resp.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"} and error["code"] == code
    assert error["param"] == param
    return error


def test_upload_list_get_content_and_delete(store, make_account):
    account, png = make_account(), png_bytes()
    resp = upload(store, account, png)
    assert resp.status_code == 201, resp.text
    assert resp.headers["x-request-id"].startswith("req_")
    file = resp.json()
    assert file["id"].startswith("file_") and len(file["id"]) == 37
    assert {k: file[k] for k in ("object", "kind", "status", "filename", "contentType", "bytes", "sha256")} == {
        "object": "file", "kind": "input", "status": "available", "filename": "cat.png",
        "contentType": "image/png", "bytes": len(png), "sha256": hashlib.sha256(png).hexdigest()}
    created = parsed(file["createdAt"])
    assert abs(parsed(file["expiresAt"]) - created - timedelta(days=7)) < timedelta(minutes=1)  # input retention
    assert timedelta(minutes=59) < parsed(file["urlExpiresAt"]) - created <= timedelta(hours=1)
    key = f"org_{account.org.pk}/input/{file['id']}/cat.png"
    assert store.object_bytes(key) == png

    got = httpx.get(f"{store.url}/api/v1/storage/{file['id']}", headers=auth(account))
    assert got.status_code == 200 and got.json()["id"] == file["id"] and got.json()["url"]
    download = httpx.get(got.json()["url"])  # no key: the URL is signed
    assert download.status_code == 200 and download.content == png
    assert download.headers["content-disposition"].startswith("attachment")

    content = httpx.get(f"{store.url}/v1/storage/{file['id']}/content", headers=auth(account))
    if store.backend == "s3":
        assert content.status_code == 302 and "X-Amz-Signature=" in content.headers["location"]
        content = httpx.get(content.headers["location"])
    assert content.status_code == 200 and content.content == png

    listing = httpx.get(f"{store.url}/api/v1/storage", headers=auth(account)).json()
    assert listing["object"] == "list" and [f["id"] for f in listing["data"]] == [file["id"]]
    assert listing["data"][0]["url"] and listing["has_more"] is False

    deleted = httpx.delete(f"{store.url}/api/v1/storage/{file['id']}", headers=auth(account))
    assert deleted.status_code == 200 and deleted.json() == {"id": file["id"], "object": "file", "deleted": True}
    assert store.object_bytes(key) is None
    assert_error(httpx.get(f"{store.url}/api/v1/storage/{file['id']}", headers=auth(account)), 404,
                 "file_not_found", "id")
    assert httpx.get(f"{store.url}/api/v1/storage", headers=auth(account)).json()["data"] == []


def test_list_is_newest_first_by_kind_with_a_cursor(store, make_account):
    account = make_account()
    inputs = [upload(store, account, png_bytes(color), filename=f"{color}.png").json()["id"]
              for color in ("red", "green", "blue")]
    dataset = upload(store, account, b'{"a": 1}\n', kind="dataset", filename="rows.jsonl",
                     content_type="application/x-ndjson").json()["id"]
    url = f"{store.url}/api/v1/storage"

    everything = httpx.get(url, headers=auth(account)).json()
    assert [f["id"] for f in everything["data"]] == [dataset, *reversed(inputs)]
    first = httpx.get(url, headers=auth(account), params={"kind": "input", "limit": 2}).json()
    assert [f["id"] for f in first["data"]] == [inputs[2], inputs[1]] and first["has_more"] is True
    assert first["last_id"] == inputs[1]
    rest = httpx.get(url, headers=auth(account), params={"kind": "input", "after": first["last_id"]}).json()
    assert [f["id"] for f in rest["data"]] == [inputs[0]] and rest["has_more"] is False
    datasets = httpx.get(url, headers=auth(account), params={"kind": "dataset"}).json()
    assert [f["id"] for f in datasets["data"]] == [dataset]
    assert_error(httpx.get(url, headers=auth(account), params={"kind": "video"}), 400, "invalid_kind", "kind")
    assert_error(httpx.get(url, headers=auth(account), params={"limit": 0}), 400, "invalid_limit", "limit")
    assert_error(httpx.get(url, headers=auth(account), params={"after": "file_unknown"}), 400, "invalid_cursor",
                 "after")


def test_presigned_upload_put_then_complete(store, make_account):
    account, png = make_account(), png_bytes()
    created = presign(store, account, bytes=len(png))
    assert created.status_code == 201, created.text
    upload_ = created.json()
    file_id = upload_["id"]
    assert upload_["method"] == "PUT" and upload_["headers"] == {"Content-Type": "image/png"}
    if store.backend == "s3":  # straight to the store, presigned by it
        assert "X-Amz-Signature=" in upload_["uploadUrl"] and not upload_["uploadUrl"].startswith(store.url)
    else:
        assert upload_["uploadUrl"].startswith(f"{store.url}/api/v1/storage/{file_id}/upload?expires=")
    assert timedelta(minutes=59) < parsed(upload_["expiresAt"]) - datetime.now().astimezone() <= timedelta(hours=1)

    pending = httpx.get(f"{store.url}/api/v1/storage/{file_id}", headers=auth(account)).json()
    assert pending["status"] == "pending" and pending["url"] is None
    assert httpx.get(f"{store.url}/api/v1/storage", headers=auth(account)).json()["data"] == []
    assert_error(httpx.get(f"{store.url}/api/v1/storage/{file_id}/content", headers=auth(account)), 409,
                 "upload_incomplete")
    complete_url = f"{store.url}/api/v1/storage/{file_id}/complete"
    assert_error(httpx.post(complete_url, headers=auth(account)), 400, "upload_incomplete")

    put = httpx.put(upload_["uploadUrl"], content=png, headers=upload_["headers"])
    assert put.status_code == 200, put.text
    done = httpx.post(complete_url, headers=auth(account))
    assert done.status_code == 200, done.text
    file = done.json()
    assert file["status"] == "available" and file["bytes"] == len(png)
    assert file["sha256"] == hashlib.sha256(png).hexdigest()
    assert abs(parsed(file["expiresAt"]) - datetime.now().astimezone() - timedelta(days=7)) < timedelta(minutes=1)
    assert httpx.get(file["url"]).content == png
    assert store.object_bytes(f"org_{account.org.pk}/input/{file_id}/big.png") == png
    assert httpx.post(complete_url, headers=auth(account)).json()["sha256"] == file["sha256"]  # harmless twice
    listed = httpx.get(f"{store.url}/api/v1/storage", headers=auth(account)).json()["data"]
    assert [f["id"] for f in listed] == [file_id]

    assert httpx.delete(f"{store.url}/api/v1/storage/{file_id}", headers=auth(account)).status_code == 200
    assert store.object_bytes(f"org_{account.org.pk}/input/{file_id}/big.png") is None


def test_complete_checks_the_uploaded_size_and_signature(s3_store, make_account):
    """Real S3 already refuses these PUTs (their size is signed); moto does not check signatures, which lets
    this test the second line of defence, at completion."""
    account, png = make_account(), png_bytes()
    short = presign(s3_store, account, bytes=len(png) + 10).json()
    assert httpx.put(short["uploadUrl"], content=png, headers=short["headers"]).status_code == 200
    assert_error(httpx.post(f"{s3_store.url}/api/v1/storage/{short['id']}/complete", headers=auth(account)), 400,
                 "upload_size_mismatch", "bytes")
    fake = presign(s3_store, account, bytes=len(png)).json()
    assert httpx.put(fake["uploadUrl"], content=b"x" * len(png), headers=fake["headers"]).status_code == 200
    error = assert_error(httpx.post(f"{s3_store.url}/api/v1/storage/{fake['id']}/complete", headers=auth(account)),
                         400, "content_type_mismatch", "contentType")
    assert "image/png" in error["message"]


def test_local_upload_url_refuses_a_wrong_signature_size_or_type(fs_store, make_account):
    account, png = make_account(), png_bytes()
    upload_ = presign(fs_store, account, bytes=len(png)).json()
    url, headers = upload_["uploadUrl"], upload_["headers"]
    tampered = url[:-1] + ("0" if url[-1] != "0" else "1")
    assert_error(httpx.put(tampered, content=png, headers=headers), 403, "invalid_signature")
    assert_error(httpx.put(url, content=png, headers={"Content-Type": "image/jpeg"}), 400, "content_type_mismatch",
                 "Content-Type")
    assert_error(httpx.put(url, content=png + b"extra", headers=headers), 413, "file_too_large", "bytes")
    assert_error(httpx.put(url, content=png[:-1], headers=headers), 400, "upload_size_mismatch", "bytes")
    assert_error(httpx.put(url, content=b"x" * len(png), headers=headers), 400, "content_type_mismatch",
                 "contentType")
    assert httpx.put(url, content=png, headers=headers).status_code == 200


def multipart_body(parts: list[tuple[str, str | None, str | None, bytes]], boundary: str = "hypereal-test") -> bytes:
    """A multipart/form-data body with its parts in the given order: (name, filename, content type, value)."""
    out = b""
    for name, filename, content_type, value in parts:
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'.encode()
        if filename:
            out += f'; filename="{filename}"'.encode()
        out += b"\r\n" + (f"Content-Type: {content_type}\r\n".encode() if content_type else b"") + b"\r\n"
        out += value + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def test_a_file_over_its_kinds_limit_is_413(fs_store, make_account):
    account = make_account()
    too_big = b"a" * (INPUT_MAX_BYTES + 1)
    error = assert_error(upload(fs_store, account, too_big, filename="big.txt", content_type="text/plain"), 413,
                         "file_too_large", "file")
    assert error["type"] == "invalid_request_error" and str(INPUT_MAX_BYTES) in error["message"]
    # The same size is fine for outputs (2 GiB by default).
    assert upload(fs_store, account, too_big, kind="output", filename="big.txt",
                  content_type="text/plain").status_code == 201
    assert_error(presign(fs_store, account, bytes=INPUT_MAX_BYTES + 1), 413, "file_too_large", "bytes")


def test_the_limit_holds_while_a_chunked_body_streams_in(fs_store, make_account):
    account = make_account()
    body = multipart_body([("kind", None, None, b"input"),
                           ("file", "big.txt", "text/plain", b"a" * (2 * INPUT_MAX_BYTES))])

    def chunks():  # no Content-Length: httpx sends it chunked, so only counting while reading can refuse it
        for start in range(0, len(body), 16 * 1024):
            yield body[start:start + 16 * 1024]

    resp = httpx.post(f"{fs_store.url}/api/v1/storage", content=chunks(),
                      headers={**auth(account), "Content-Type": "multipart/form-data; boundary=hypereal-test"})
    assert_error(resp, 413, "file_too_large", "file")


def test_a_kind_sent_after_the_file_still_gets_its_limit(fs_store, make_account):
    account = make_account()
    body = multipart_body([("file", "big.txt", "text/plain", b"a" * (INPUT_MAX_BYTES + 1)),
                           ("kind", None, None, b"input")])
    resp = httpx.post(f"{fs_store.url}/api/v1/storage", content=body,
                      headers={**auth(account), "Content-Type": "multipart/form-data; boundary=hypereal-test"})
    assert_error(resp, 413, "file_too_large", "file")


def test_content_types_are_checked_against_the_kind_and_the_bytes(fs_store, make_account):
    account = make_account()
    error = assert_error(upload(fs_store, account, b"definitely not a png"), 400, "content_type_mismatch", "file")
    assert "image/png" in error["message"]
    assert_error(upload(fs_store, account, png_bytes(), kind="weights"), 400, "unsupported_content_type", "file")
    assert_error(upload(fs_store, account, b"<html>", filename="x.html", content_type="text/html"), 400,
                 "unsupported_content_type", "file")
    assert_error(presign(fs_store, account, contentType="text/html", bytes=10), 400, "unsupported_content_type",
                 "contentType")
    assert_error(upload(fs_store, account, png_bytes(), kind="video"), 400, "invalid_kind", "kind")
    # A generic type (curl's default) is read from the filename, then checked against the bytes like any other.
    guessed = upload(fs_store, account, png_bytes(), content_type="application/octet-stream")
    assert guessed.status_code == 201 and guessed.json()["contentType"] == "image/png"
    assert_error(upload(fs_store, account, b"not a png", content_type="application/octet-stream"), 400,
                 "content_type_mismatch", "file")
    assert upload(fs_store, account, b"\x00weights", kind="weights", filename="model.safetensors",
                  content_type="application/octet-stream").json()["contentType"] == "application/octet-stream"


def test_missing_fields_and_bad_bodies_are_400(fs_store, make_account):
    account = make_account()
    url = f"{fs_store.url}/api/v1/storage"
    assert_error(httpx.post(url, headers=auth(account), data={"kind": "input"}, files={"other": ("a", b"a")}), 400,
                 "missing_required_parameter", "file")
    assert_error(httpx.post(url, headers=auth(account), files={"file": ("a.txt", b"a", "text/plain")}), 400,
                 "missing_required_parameter", "kind")
    assert_error(httpx.post(url, headers=auth(account), json={"kind": "input"}), 400, "invalid_content_type")
    truncated = multipart_body([("kind", None, None, b"input"), ("file", "a.txt", "text/plain", b"abc")])[:-20]
    assert_error(httpx.post(url, content=truncated, headers={
        **auth(account), "Content-Type": "multipart/form-data; boundary=hypereal-test"}), 400, "invalid_multipart")
    assert_error(presign(fs_store, account, bytes="10"), 400, "invalid_type", "bytes")
    assert_error(presign(fs_store, account, bytes=10, filename=None), 400, "missing_required_parameter", "filename")


@pytest.mark.parametrize(("given", "kept"), [
    ("../../etc/passwd", "passwd"),
    ("C:\\Users\\me\\notes.txt", "notes.txt"),
    ("..hidden\x00\u202e.txt", "hidden.txt"),
    ("...", "file"),
    ("é" * 150 + ".txt", "é" * 98 + ".txt"),  # 200 bytes of UTF-8 at most, the extension kept
])
def test_filenames_lose_their_paths_and_control_characters(fs_store, make_account, given, kept):
    account = make_account()
    resp = httpx.post(f"{fs_store.url}/api/v1/storage", headers=auth(account),
                      data={"kind": "input", "filename": given}, files={"file": ("x.txt", b"hello", "text/plain")})
    assert resp.status_code == 201, resp.text
    file = resp.json()
    assert file["filename"] == kept
    assert fs_store.object_bytes(f"org_{account.org.pk}/input/{file['id']}/{kept}") == b"hello"


def test_signed_urls_refuse_a_tampered_or_expired_signature(store, make_account):
    account, png = make_account(), png_bytes()
    file = upload(store, account, png).json()
    other = upload(store, account, png_bytes("blue")).json()
    base = f"{store.url}/api/v1/storage/{file['id']}/content"
    soon = int(time.time()) + 60
    signature = url_signature(purpose="download", file_id=file["id"], expires=soon)
    assert httpx.get(base, params={"expires": soon, "signature": signature}, follow_redirects=True).content == png
    for params in ({"expires": soon, "signature": "0" * 64},
                   {"expires": soon + 3600, "signature": signature},  # a later expiry than signed
                   {"signature": signature}):
        assert_error(httpx.get(base, params=params), 403, "invalid_signature")
    past = int(time.time()) - 1
    expired = url_signature(purpose="download", file_id=file["id"], expires=past)
    assert_error(httpx.get(base, params={"expires": past, "signature": expired}), 403, "invalid_signature")
    for other_grant in (url_signature(purpose="download", file_id=other["id"], expires=soon),
                        url_signature(purpose="upload", file_id=file["id"], expires=soon)):
        assert_error(httpx.get(base, params={"expires": soon, "signature": other_grant}), 403, "invalid_signature")


def test_another_organizations_file_is_not_found_on_every_verb(store, make_account):
    owner, stranger = make_account(), make_account()
    file_id = upload(store, owner, png_bytes()).json()["id"]
    pending_id = presign(store, owner, bytes=10).json()["id"]
    unknown = "file_" + "0" * 32
    for target in (file_id, pending_id, unknown):
        base = f"{store.url}/api/v1/storage/{target}"
        for resp in (httpx.get(base, headers=auth(stranger)), httpx.delete(base, headers=auth(stranger)),
                     httpx.get(f"{base}/content", headers=auth(stranger)),
                     httpx.post(f"{base}/complete", headers=auth(stranger))):
            error = assert_error(resp, 404, "file_not_found", "id")
            assert error["message"] == f"No such file: {target}."  # the same answer as for an unknown id
    assert httpx.get(f"{store.url}/api/v1/storage", headers=auth(stranger)).json()["data"] == []
    assert_error(httpx.get(f"{store.url}/api/v1/storage", headers=auth(stranger), params={"after": file_id}), 400,
                 "invalid_cursor", "after")
    assert httpx.get(f"{store.url}/api/v1/storage/{file_id}/content", headers=auth(owner),
                     follow_redirects=True).content == png_bytes()


def test_every_storage_answer_is_json_even_without_a_key_or_route(fs_store, make_account):
    account = make_account()
    url = f"{fs_store.url}/api/v1/storage"
    assert_error(httpx.get(url), 401, "missing_api_key")
    assert_error(httpx.post(url, files={"file": ("a", b"a")}), 401, "missing_api_key")
    assert_error(httpx.get(f"{url}/file_x/content"), 401, "missing_api_key")
    assert_error(httpx.get(f"{url}/file_x/nothing/here", headers=auth(account)), 404, "not_found")
    assert_error(httpx.get(f"{url}/", headers=auth(account)), 404, "not_found")
    wrong_method = httpx.patch(f"{url}/file_x", headers=auth(account))
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == "method_not_allowed"


def test_a_failing_store_answers_500_in_the_error_shape(s3_url, make_account):
    account = make_account()
    url, proc = storage_gateway_start(HYPEREAL_STORAGE_BACKEND="s3", HYPEREAL_S3_BUCKET="no-such-bucket",
                                      HYPEREAL_S3_ENDPOINT_URL=s3_url, HYPEREAL_S3_REGION=S3_REGION, **S3_CREDENTIALS)
    try:
        resp = httpx.post(f"{url}/api/v1/storage", headers=auth(account), data={"kind": "input"},
                          files={"file": ("cat.png", png_bytes(), "image/png")})
    finally:
        stop_process(proc)
    error = assert_error(resp, 500, "storage_error")
    assert error["type"] == "server_error"
