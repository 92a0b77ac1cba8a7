import asyncio

import pytest

from gateway.server import CONTINUE, _HeadWithBody

pytestmark = pytest.mark.no_services

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


class Written:
    """What reached the socket, one entry per write: a transport's write and close, nothing else."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def held_transport() -> tuple[Written, _HeadWithBody]:
    """A response's transport over a socket that records its writes (inside a running loop)."""
    written = Written()
    return written, _HeadWithBody(written, asyncio.get_running_loop())


async def turn() -> None:
    """One turn of the event loop: what was scheduled with call_soon before this has run."""
    await asyncio.sleep(0)


def test_the_head_leaves_with_the_first_body_bytes_in_one_write():
    async def scenario():
        written, transport = held_transport()
        transport.write(HEAD)
        transport.write(b"ok")
        await turn()
        transport.write(b"more")
        return written.writes

    assert asyncio.run(scenario()) == [HEAD + b"ok", b"more"]


def test_a_head_whose_body_is_late_is_not_held_past_the_loop_turn():
    async def scenario():
        written, transport = held_transport()
        transport.write(HEAD)
        held = list(written.writes)
        await turn()
        sent = list(written.writes)
        transport.write(b"ok")
        return held, sent, written.writes

    held, sent, after = asyncio.run(scenario())
    assert held == [] and sent == [HEAD] and after == [HEAD, b"ok"]


def test_the_interim_100_continue_goes_out_at_once_and_the_head_still_waits_for_the_body():
    async def scenario():
        written, transport = held_transport()
        transport.write(CONTINUE)
        first = list(written.writes)
        transport.write(HEAD)
        transport.write(b"ok")
        return first, written.writes

    first, writes = asyncio.run(scenario())
    assert first == [CONTINUE] and writes == [CONTINUE, HEAD + b"ok"]


def test_closing_sends_a_held_head_first_and_a_closed_socket_gets_nothing_more():
    async def scenario():
        written, transport = held_transport()
        transport.write(HEAD)
        transport.close()
        closed_with = (list(written.writes), written.closed)
        gone, late = held_transport()
        late.write(HEAD)
        gone.closed = True  # the client left before the loop's next turn
        await turn()
        return closed_with, gone.writes

    (writes, closed), late_writes = asyncio.run(scenario())
    assert writes == [HEAD] and closed and late_writes == []
