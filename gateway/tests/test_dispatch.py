"""The gateway's last resort: whatever a handler did not expect is answered in the shape of the API the
path falls under, with a request id that finds its traceback in the log — never the server's plain text."""

import asyncio
import json
import logging

import pytest

from gateway.app import dispatch
from gateway.db import DatabaseUnavailable

pytestmark = pytest.mark.no_services


def served(path: str, handler) -> list[dict]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(dispatch({"type": "http", "method": "POST", "path": path, "headers": []}, receive, send,
                         ({"POST": handler}, {})))
    return sent


def answer(sent: list[dict]) -> tuple[int, dict[str, str], dict]:
    start, body = sent
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, json.loads(body["body"])


async def broken(scope, receive, send) -> None:
    raise KeyError("a bug")


async def database_down(scope, receive, send) -> None:
    raise DatabaseUnavailable()


def test_an_unexpected_exception_is_a_500_in_the_apis_shape_with_a_request_id_in_the_log(caplog):
    with caplog.at_level(logging.ERROR, logger="gateway.app"):
        status, headers, body = answer(served("/v1/messages", broken))
    assert status == 500 and headers["content-type"].startswith("application/json")
    assert body["type"] == "error" and body["error"]["type"] == "api_error"  # what the Anthropic SDK reads
    request_id = headers["x-request-id"]
    assert request_id in body["error"]["message"]
    logged = next(r for r in caplog.records if request_id in r.getMessage())
    assert logged.exc_info and logged.exc_info[0] is KeyError, "the traceback is logged"

    status, _, body = answer(served("/v1beta/models/m:generateContent", broken))
    assert status == 500 and body["error"]["code"] == 500 and body["error"]["status"] == "INTERNAL"
    status, _, body = answer(served("/v1/chat/completions", broken))
    assert status == 500 and body["error"]["type"] == "api_error" and body["error"]["code"] == "internal_error"


def test_an_unavailable_database_is_a_503_with_retry_after():
    status, headers, body = answer(served("/v1/chat/completions", database_down))
    assert status == 503 and int(headers["retry-after"]) > 0
    assert body["error"]["code"] == "database_unavailable"


def test_an_answer_already_under_way_is_left_to_the_server():
    async def half(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise KeyError("mid-stream")

    with pytest.raises(KeyError):
        served("/v1/chat/completions", half)
