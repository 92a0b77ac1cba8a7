"""The gateway's hot path in process, without a server in front: CPU per call, and where it goes.

`uv run python bench/hotpath.py`. Same set-up as bench/run.py (PostgreSQL +
Redis, a real key and wallet, the fake upstream over real HTTP), but the ASGI application is imported
here and called directly, one call after another on uvloop, pinned to one core: the numbers are the
gateway's own code (auth, reservations, limiter, upstream client, response, metering queue), free of
uvicorn, of the load generator and of scheduling noise. The metering flush runs as in production
(every HYPEREAL_METER_FLUSH_MS, on its thread pool) unless BENCH_HOTPATH_FLUSH=0, which defers it to
the end so the request path can be measured alone.

Prints CPU µs per call (this thread and the whole process) and, with cProfile, the functions ranked
by own time and by cumulative time; writes bench/profiles/hotpath-<kind>.pstats.

Settings: BENCH_HOTPATH_CALLS (2000), BENCH_HOTPATH_STREAM (0; 1 = 20-chunk streams), BENCH_HOTPATH_FLUSH
(1), BENCH_HOTPATH_TOP (35), BENCH_HOTPATH_REPEAT (1; more prints the least and the median CPU of that many
runs: other tenants of a VM only ever add to it), plus bench/run.py's database settings.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import os
import pstats
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import BENCH, PY, ROOT, Bench, Config, Service, cores, free_port, log, request_body

CALLS = int(os.environ.get("BENCH_HOTPATH_CALLS", 2000))
STREAM = os.environ.get("BENCH_HOTPATH_STREAM", "0").lower() in {"1", "true", "yes"}
FLUSH = os.environ.get("BENCH_HOTPATH_FLUSH", "1").lower() in {"1", "true", "yes"}
TOP = int(os.environ.get("BENCH_HOTPATH_TOP", 35))
REPEAT = int(os.environ.get("BENCH_HOTPATH_REPEAT", 1))  # on a shared VM, the least of several runs is the code's


def owner(filename: str) -> str:
    """Which library (or which gateway module) a profiled function belongs to."""
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if filename.startswith(str(ROOT) + "/"):
        rel = filename[len(str(ROOT)) + 1 :]
        return rel if rel.startswith(("gateway/", "hypereal/")) else rel.split("/", 1)[0] + "/"
    if "/lib/python3" in filename:
        rest = filename.split("/lib/python3", 1)[1].split("/", 1)[1]
        return "stdlib " + rest.split("/", 1)[0].removesuffix(".py")
    return filename


def by_owner(stats: pstats.Stats) -> list[tuple[str, float]]:
    """Own time summed per library; a C built-in's time goes to its callers' libraries, pro rata."""
    totals: dict[str, float] = {}
    for (filename, _, _), (_, _, tt, _, callers) in stats.stats.items():  # type: ignore[attr-defined]
        if filename != "~":
            totals[owner(filename)] = totals.get(owner(filename), 0.0) + tt
            continue
        spread = sum(c[2] for c in callers.values()) or 0
        for (cfile, _, _), c in callers.items():
            share = tt * (c[2] / spread) if spread else tt / len(callers)
            name = owner(cfile) if cfile != "~" else "C built-ins"
            totals[name] = totals.get(name, 0.0) + share
        if not callers:
            totals["C built-ins"] = totals.get("C built-ins", 0.0) + tt
    total = sum(totals.values()) or 1
    return [(name, 100 * t / total) for name, t in sorted(totals.items(), key=lambda kv: -kv[1])]


def scope_for(key: str, body: bytes) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"authorization", f"Bearer {key}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }


async def one_call(app, key: str, body: bytes) -> int:
    done = asyncio.Event()
    sent = False
    status = 0

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()

    await app(scope_for(key, body), receive, send)
    return status


async def lifespan(app, events: list[str]) -> asyncio.Task:
    """Drive the application's lifespan: startup now, shutdown when the returned task is fed."""
    queue: asyncio.Queue = asyncio.Queue()
    for event in events:
        queue.put_nowait({"type": event})
    answers: list[dict] = []

    async def send(message):
        answers.append(message)

    task = asyncio.ensure_future(app({"type": "lifespan", "asgi": {"version": "3.0"}}, queue.get, send))
    while not answers:
        await asyncio.sleep(0.01)  # waiting for startup.complete
    task.queue = queue  # type: ignore[attr-defined]
    return task


async def measure(key: str) -> None:
    from gateway.metering import meter
    from hypereal.asgi import application

    body = request_body(STREAM).encode()
    life = await lifespan(application, ["lifespan.startup"]) if FLUSH else None
    for _ in range(200):  # warm-up: connections, caches, scripts
        assert await one_call(application, key, body) == 200
    await meter.flush()
    await asyncio.sleep(0.5)

    async def run(n: int) -> tuple[float, float, float]:
        wall, cpu = time.perf_counter(), time.thread_time()
        proc = resource.getrusage(resource.RUSAGE_SELF)
        for _ in range(n):
            await one_call(application, key, body)
        proc2 = resource.getrusage(resource.RUSAGE_SELF)
        return (
            (time.perf_counter() - wall) / n * 1e6,
            (time.thread_time() - cpu) / n * 1e6,
            (proc2.ru_utime + proc2.ru_stime - proc.ru_utime - proc.ru_stime) / n * 1e6,
        )

    runs = sorted([await run(CALLS) for _ in range(REPEAT)], key=lambda r: r[1])
    kind = "stream-20" if STREAM else "non-stream"
    print(f"\n{kind}, {CALLS} calls in sequence, metering flush {'on' if FLUSH else 'deferred'}:")
    for label, (wall, cpu, proc_cpu) in [("least", runs[0]), ("median", runs[len(runs) // 2])][: min(REPEAT, 2)]:
        print(f"  {label + ' of ' + str(REPEAT) + ' runs: ' if REPEAT > 1 else ''}wall {wall:.0f} µs/call, "
              f"event-loop thread CPU {cpu:.0f} µs/call, process CPU {proc_cpu:.0f} µs/call")
    profiler = cProfile.Profile()
    profiler.enable()
    await run(CALLS)
    profiler.disable()
    await meter.flush()
    out = BENCH / "profiles"
    out.mkdir(exist_ok=True)
    profiler.dump_stats(out / f"hotpath-{kind}.pstats")
    print("\n--- own time by library (cProfile; C built-ins charged to their callers) ---")
    for name, pct in by_owner(pstats.Stats(profiler))[:TOP]:
        print(f"  {pct:5.1f} %  {name}")
    for order in ("tottime", "cumulative"):
        buf = io.StringIO()
        stats = pstats.Stats(profiler, stream=buf).strip_dirs().sort_stats(order)
        stats.print_stats(TOP)
        text = buf.getvalue()
        print(f"\n--- cProfile (overhead included), by {order} ---")
        print(text[text.find("   ncalls") :])
    if life is not None:
        life.queue.put_nowait({"type": "lifespan.shutdown"})
        await life


def main() -> int:
    bench = Bench(Config())
    bench.server_core, bench.client_core = cores()
    os.environ.update(bench.gateway_env())
    bench.reset_stores()
    import subprocess

    subprocess.run([PY, "manage.py", "migrate", "--noinput"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    port = free_port()
    bench.upstream_url = f"http://127.0.0.1:{port}"
    bench.upstream = bench.start(
        Service(
            "fake-upstream",
            [
                "taskset",
                "-c",
                str(bench.client_core),
                PY,
                str(BENCH / "fake_upstream.py"),
                "--port",
                str(port),
            ]
            if bench.client_core is not None
            else [PY, str(BENCH / "fake_upstream.py"), "--port", str(port)],
            f"{bench.upstream_url}/health",
        )
    )
    try:
        account = bench.create_account()
        if bench.server_core is not None:
            os.sched_setaffinity(0, {bench.server_core})
        log(f"calling the ASGI application in process on core {bench.server_core}")
        import uvloop

        uvloop.run(measure(account.key))
    finally:
        bench.teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
