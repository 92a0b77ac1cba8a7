import pytest

from gateway.sse import SSEParser, encode_data, encode_event, event_field

pytestmark = pytest.mark.no_services


def test_events_split_across_reads_come_out_whole():
    parser = SSEParser()
    assert parser.feed(b'data: {"a"') == []
    assert parser.feed(b':1}\n\ndata: [DO') == [b'data: {"a":1}\n\n']
    assert parser.feed(b"NE]\n\n") == [b"data: [DONE]\n\n"]


def test_crlf_line_endings_are_understood():
    assert SSEParser().feed(b"event: ping\r\ndata: {}\r\n\r\n") == [b"event: ping\ndata: {}\n\n"]


def test_fields_are_read_and_written():
    event = encode_event("message_start", {"type": "message_start"})
    assert event_field(event, b"event") == b"message_start"
    assert event_field(event, b"data") == b'{"type":"message_start"}'
    assert event_field(b": keep-alive\n\n", b"data") is None
    assert encode_data("[DONE]") == b"data: [DONE]\n\n"
