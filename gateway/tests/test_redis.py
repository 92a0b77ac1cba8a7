"""The gateway's own Redis connection, against the real Redis: replies, scripts, pipelining, failures."""

import asyncio
import os
from urllib.parse import urlparse

import pytest
import redis as sync_redis

from gateway.redis import Redis, RedisError

COUNT_SCRIPT = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


@pytest.fixture
def url():
    return os.environ["REDIS_URL"]


@pytest.fixture
def sync(url):
    client = sync_redis.Redis.from_url(url)
    client.delete("t:redis:count", "t:redis:key")
    yield client
    client.delete("t:redis:count", "t:redis:key")
    client.close()


def run(coro):
    return asyncio.run(coro)


def test_replies_come_back_typed_and_in_order(url, sync):
    async def go():
        client = Redis(url)
        replies = await client.pipeline([("SET", "t:redis:key", "v"), ("GET", "t:redis:key"), ("INCR", "t:redis:count"),
                                         ("MGET", "t:redis:key", "t:redis:missing"), ("GET", "t:redis:missing")])
        await client.close()
        return replies
    assert run(go()) == [b"OK", b"v", 1, [b"v", None], None]


def test_many_callers_share_one_connection_and_each_gets_its_own_reply(url, sync):
    async def go():
        client = Redis(url)
        results = await asyncio.gather(*[client.execute("INCRBY", "t:redis:count", n) for n in range(1, 201)])
        await client.close()
        return results
    results = run(go())
    assert len(set(results)) == 200, "every caller saw the counter right after its own increment"
    assert max(results) == sum(range(1, 201)) == int(sync.get("t:redis:count"))


def test_a_script_is_loaded_once_and_again_after_redis_forgot_it(url, sync):
    async def go():
        client = Redis(url)
        first = await client.script(COUNT_SCRIPT, ["t:redis:count"], [5])
        sync.script_flush()  # as after a Redis restart
        second = await client.script(COUNT_SCRIPT, ["t:redis:count"], [2])
        await client.close()
        return first, second
    assert run(go()) == (5, 7)


def test_errors_are_raised_not_returned(url, sync):
    async def go():
        client = Redis(url)
        await client.execute("SET", "t:redis:key", "text")
        try:
            with pytest.raises(RedisError, match="not an integer"):
                await client.execute("INCR", "t:redis:key")
            return await client.execute("GET", "t:redis:key")  # the connection is still in step
        finally:
            await client.close()
    assert run(go()) == b"text"


def test_a_killed_connection_fails_its_callers_and_the_next_call_reconnects(url, sync):
    async def go():
        client = Redis(url)
        connection_id = await client.execute("CLIENT", "ID")
        blocked = asyncio.ensure_future(client.execute("BLPOP", "t:redis:never", 0))
        await asyncio.sleep(0)  # one turn of the loop: the BLPOP is written before the kill is sent
        await asyncio.to_thread(sync.client_kill_filter, _id=connection_id)
        with pytest.raises(RedisError, match="lost"):
            await blocked
        value = await client.execute("INCR", "t:redis:count")
        await client.close()
        return value
    assert run(go()) == 1


def test_the_database_number_in_the_url_is_selected(url, sync):
    parsed = urlparse(url)
    other = parsed._replace(path="/3").geturl()

    async def go():
        client = Redis(other)
        await client.execute("SET", "t:redis:key", "db3")
        await client.close()
    run(go())
    db3 = sync_redis.Redis.from_url(other)
    try:
        assert db3.get("t:redis:key") == b"db3" and sync.get("t:redis:key") is None
        db3.delete("t:redis:key")
    finally:
        db3.close()


def test_nothing_listening_is_a_clear_error(url):
    async def go():
        with pytest.raises(RedisError, match="cannot connect"):
            await Redis("redis://127.0.0.1:1/0").execute("PING")
    run(go())


def test_a_redis_that_stops_answering_fails_its_callers_and_the_next_call_reconnects(url, sync):
    """A server that answers the connection's hello, then nothing: every caller waiting fails after the
    timeout (not one per command: the one watchdog drops the connection), and the next call connects anew."""
    hello = b"$27\r\nrun_id:0123456789abcdef0000\r\n"
    connections = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        if len(connections) > 1:  # the second connection is a Redis that answers: the real one, proxied
            upstream_reader, upstream_writer = await asyncio.open_connection(
                urlparse(url).hostname or "127.0.0.1", urlparse(url).port or 6379)

            async def pipe(source, sink):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
            return
        selects = [b"+OK\r\n"] if urlparse(url).path.strip("/") not in ("", "0") else []
        for answer in (*selects, hello):  # SELECT (when the URL names a database), INFO server: then silence
            await reader.read(65536)
            writer.write(answer)
        while await reader.read(65536):
            pass

    async def go():
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = Redis(f"redis://127.0.0.1:{port}{urlparse(url).path}", timeout=0.3)
        started = asyncio.get_running_loop().time()
        first = asyncio.ensure_future(client.execute("INCR", "t:redis:count"))
        await asyncio.sleep(0.1)  # a second caller, later on the same connection
        second = asyncio.ensure_future(client.execute("INCR", "t:redis:count"))
        for call in (first, second):
            with pytest.raises(RedisError, match="did not answer in time"):
                await call
        waited = asyncio.get_running_loop().time() - started
        value = await client.execute("INCR", "t:redis:count")
        await client.close()
        server.close()
        return waited, value, len(connections)

    waited, value, connected = run(go())
    assert 0.3 <= waited < 1, "both fail once the oldest reply is late, the later caller included"
    assert value == 1 and connected == 2
