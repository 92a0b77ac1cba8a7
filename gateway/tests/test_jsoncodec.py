"""The hot path's JSON: what clients send reads and writes as the standard library did, only faster."""

import json

import pytest

from gateway import jsoncodec
from gateway.formats.base import json_bytes, load_json
from gateway.http import parse_json_object

pytestmark = pytest.mark.no_services


def test_a_request_reads_and_is_written_upstream_unchanged():
    body = {"model": "m", "messages": [{"role": "user", "content": "héllo \u2028 \U0001f600 \"quoted\"\n"}],
            "temperature": 0.1, "max_tokens": 2**63, "stop": None, "stream": True}
    raw = json.dumps(body).encode()
    assert parse_json_object(raw) == body
    assert json.loads(json_bytes(parse_json_object(raw))) == body


def test_a_string_cut_mid_emoji_is_read_and_passed_on_as_it_came():
    """JavaScript's JSON.stringify escapes a lone surrogate; a client that cuts text by UTF-16 length sends
    one. The standard library reads it, orjson does not: the call must still go through, with the same text."""
    raw = b'{"model": "m", "messages": [{"role": "user", "content": "cut \\ud83d"}]}'
    body = parse_json_object(raw)
    assert body["messages"][0]["content"] == "cut \ud83d"
    assert b'"cut \\ud83d"' in json_bytes(body)


def test_what_neither_reads_is_an_error_as_before():
    assert load_json(b"{not json") is None
    with pytest.raises(ValueError):
        jsoncodec.loads(b'{"a": }')
    with pytest.raises(RecursionError):  # past orjson's depth too: the caller answers 400 for it
        jsoncodec.loads(b"[" * 200_000)


def test_numbers_outside_orjson_are_written_as_the_standard_library_writes_them():
    assert jsoncodec.dumps({"n": 2**70}) == b'{"n":1180591620717411303424}'
    assert jsoncodec.loads(b'{"t": NaN}')["t"] != jsoncodec.loads(b'{"t": NaN}')["t"]  # NaN, read as before
