"""Hypereal load benchmark: one gateway process on one core, full accounting, against a 0 ms fake upstream.

`make bench` (or `uv run python bench/run.py`). What it does, from a fresh clone on a 2-core machine:

1. installs Debian's `wrk` if it is missing (apt-get), the load generator, driven by bench/wrk/chat.lua;
2. recreates the PostgreSQL database `hypereal_bench`, migrates it, flushes Redis db 14;
3. starts bench/fake_upstream.py and ONE gateway process (uvicorn `hypereal.asgi:application`),
   the gateway pinned to core 0, the load generator and the fake upstream on core 1;
4. creates a real organization, wallet (credits granted through the ledger), `ck_` key (with a monthly
   spending limit, so that reservation runs too) and rate limits (set, high enough never to refuse, so
   the limiter runs on every call), and a catalog model `bench-model` pointing at the fake upstream;
5. measures non-stream and 20-chunk stream calls at concurrency 1 and 32, directly against the fake
   upstream (which then gets core 0 to itself) and through the gateway, each after a warm-up;
6. soaks the gateway with BENCH_SOAK_REQUESTS non-stream calls and compares its RSS before and after;
7. checks that every call sent through the gateway was logged and charged;
8. prints one table and writes it with the checks to bench/results.md.

Settings (environment): BENCH_DURATION (s per measurement, 10), BENCH_WARMUP (s, 3), BENCH_CONCURRENCY
("1,32"), BENCH_SOAK_REQUESTS (100000, 0 = skip), BENCH_SOAK_WARMUP (10000), BENCH_SOAK_CONCURRENCY (32),
BENCH_SOAK_MAX_SECONDS (600, per quarter of the soak), BENCH_MEM_TOLERANCE_MB (8), BENCH_LITELLM (0),
BENCH_DATABASE_URL, BENCH_REDIS_URL, BENCH_RESULTS (bench/results.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PY = sys.executable
LUA = BENCH / "wrk" / "chat.lua"
MODEL = "bench-model"
GRANT_CREDITS = 1_000_000
PRICES = {"input": "250", "output": "1000"}  # credits per million tokens, a mid-range model
MiB = 1024 * 1024


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


@dataclass
class Config:
    duration: int = env_int("BENCH_DURATION", 10)
    warmup: int = env_int("BENCH_WARMUP", 3)
    concurrency: tuple[int, ...] = tuple(
        int(c) for c in os.environ.get("BENCH_CONCURRENCY", "1,32").split(",")
    )
    soak_requests: int = env_int("BENCH_SOAK_REQUESTS", 100_000)
    soak_warmup: int = env_int("BENCH_SOAK_WARMUP", 10_000)
    soak_concurrency: int = env_int("BENCH_SOAK_CONCURRENCY", 32)
    soak_max_seconds: int = env_int("BENCH_SOAK_MAX_SECONDS", 600)
    mem_tolerance_mb: float = env_float("BENCH_MEM_TOLERANCE_MB", 8)
    litellm: bool = os.environ.get("BENCH_LITELLM", "0").lower() in {"1", "true", "yes"}
    database_url: str = os.environ.get(
        "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/hypereal_bench"
    )
    redis_url: str = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    results: Path = Path(os.environ.get("BENCH_RESULTS") or BENCH / "results.md")  # set but empty: the default
    # Extra settings for the gateway process, for experiments: "HYPEREAL_METER_FLUSH_MS=1000,NAME=VALUE".
    gateway_env: dict = field(
        default_factory=lambda: dict(
            kv.split("=", 1) for kv in os.environ.get("BENCH_GATEWAY_ENV", "").split(",") if "=" in kv
        )
    )


def log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


# --- machine --------------------------------------------------------------------------------------


def ensure_wrk() -> str:
    """Debian's wrk; installed with apt-get when missing (the benchmark machines run as root)."""
    if path := shutil.which("wrk"):
        return path
    if not shutil.which("apt-get"):
        raise SystemExit("wrk is not installed and apt-get is not available: install wrk 4.x first.")
    sudo = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if sudo is None:
        raise SystemExit("wrk is not installed: run `apt-get install wrk` as root first.")
    log("wrk not found: installing it with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*sudo, "apt-get", "install", "-y", "-q", "wrk"]
    if subprocess.run(install, env=env, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run([*sudo, "apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL, check=True)
        subprocess.run(install, env=env, stdout=subprocess.DEVNULL, check=True)
    if path := shutil.which("wrk"):
        return path
    raise SystemExit("wrk could not be installed.")


def cores() -> tuple[int | None, int | None]:
    """(server core, client core): the gateway gets one core to itself, load + upstream the other."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        log(f"only {len(available)} core(s): running unpinned, numbers are not comparable to the budget")
        return None, None
    return available[0], available[1]


def pinned(core: int | None) -> list[str]:
    return ["taskset", "-c", str(core)] if core is not None and shutil.which("taskset") else []


def move_to_core(pid: int, core: int | None) -> None:
    if core is not None and shutil.which("taskset"):
        subprocess.run(
            ["taskset", "-a", "-p", "-c", str(core), str(pid)], check=True, stdout=subprocess.DEVNULL
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid: int, field_name: str) -> int:
    """A memory figure of /proc/<pid>/status, in bytes (0 when unavailable)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_pids(pid: int) -> list[int]:
    """pid and its descendants, whichever thread started them (the gateway's metering writer, LiteLLM's
    workers)."""
    pids, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{parent}/task").iterdir():
                for child in (task / "children").read_text().split():
                    pids.append(int(child))
                    frontier.append(int(child))
    return pids


def rss(pid: int) -> int:
    return sum(proc_status(p, "VmRSS") for p in tree_pids(pid))


def peak_rss(pid: int) -> int:
    return sum(proc_status(p, "VmHWM") for p in tree_pids(pid))


def reset_peak_rss(pid: int) -> bool:
    """Restart the VmHWM high-water mark (Linux ≥ 4.0: write 5 to clear_refs), so peaks are per scenario."""
    ok = True
    for p in tree_pids(pid):
        try:
            Path(f"/proc/{p}/clear_refs").write_text("5")
        except OSError:
            ok = False
    return ok


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of pid and its descendants (all threads), in seconds."""
    total = 0
    for p in tree_pids(pid):
        with contextlib.suppress(OSError, IndexError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def core_busy_seconds(core: int | None) -> float:
    """Busy time of one core (everything but idle and iowait), from /proc/stat."""
    if core is None:
        return 0.0
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            v = [int(x) for x in line.split()[1:]]
            return (sum(v[:8]) - v[3] - v[4]) / TICKS
    return 0.0


@dataclass
class RunCost:
    """What the measured process and its core did during one run."""

    cpu_ms_per_request: float
    others_pct: float  # share of the core used by other processes (PostgreSQL, Redis, anything else)


class CpuWatch:
    def __init__(self, pid: int, core: int | None) -> None:
        self.pid, self.core = pid, core
        self.cpu, self.busy, self.wall = cpu_seconds(pid), core_busy_seconds(core), time.monotonic()

    def done(self, requests: int) -> RunCost:
        cpu = cpu_seconds(self.pid) - self.cpu
        busy = core_busy_seconds(self.core) - self.busy
        wall = time.monotonic() - self.wall
        return RunCost(
            cpu_ms_per_request=1000 * cpu / requests if requests else 0.0,
            others_pct=max(0.0, 100 * (busy - cpu) / wall) if self.core is not None else 0.0,
        )


# --- processes ------------------------------------------------------------------------------------


class Service:
    """A process this benchmark started, stopped by its own pid (and its own session) only."""

    def __init__(
        self,
        name: str,
        args: list[str],
        health_url: str,
        env: dict | None = None,
        cwd: Path = ROOT,
        timeout: float = 60,
        stdout=None,
        inherit_env: bool = True,
    ) -> None:
        self.name = name
        full_env = {**os.environ, **(env or {})} if inherit_env else dict(env or {})
        self.proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=full_env,
            start_new_session=True,
            stdout=stdout,
            stderr=subprocess.STDOUT if stdout else None,
        )
        self.pid = self.proc.pid
        try:
            wait_healthy(health_url, self.proc, timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: only what we started
                self.proc.wait(timeout=5)


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)  # polling readiness, bounded by the deadline
    raise RuntimeError(f"{url} not healthy after {timeout:.0f} s")


# --- load ------------------------------------------------------------------------------------------


def request_body(stream: bool) -> str:
    body: dict = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
        "max_tokens": 64,
    }
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    return json.dumps(body, separators=(",", ":"))


@dataclass
class Load:
    sent: int
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float
    raw: dict

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


class Wrk:
    def __init__(self, binary: str, core: int | None) -> None:
        self.binary, self.core = binary, core

    def run(
        self,
        url: str,
        *,
        stream: bool,
        connections: int,
        seconds: int,
        key: str = "",
        until: Callable[[], bool] | None = None,
        body: str | None = None,
    ) -> Load:
        """One wrk run of ``seconds``; with ``until``, stopped early (SIGINT: wrk still reports) once it holds."""
        env = {
            **os.environ,
            "BENCH_BODY": body or request_body(stream),
            "BENCH_KEY": key,
            "BENCH_PATH": urlparse(url).path,
        }
        cmd = [
            *pinned(self.core),
            self.binary,
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA),
            url,
        ]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            if until is not None:
                while proc.poll() is None:
                    if until():
                        proc.send_signal(signal.SIGINT)
                        break
                    time.sleep(0.1)  # polling progress; wrk's own -d bounds the run
            stdout, stderr = proc.communicate(timeout=seconds + 120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        line = next((ln for ln in stdout.splitlines() if ln.startswith("BENCHJSON ")), None)
        if proc.returncode != 0 or line is None:
            raise RuntimeError(f"wrk failed ({proc.returncode}): {stdout[-2000:]} {stderr[-2000:]}")
        raw = json.loads(line.removeprefix("BENCHJSON "))
        lat = raw["latency_us"]
        return Load(
            sent=raw["sent"],
            requests=raw["requests"],
            seconds=raw["duration_us"] / 1e6,
            errors=sum(raw["errors"].values()),
            p50_ms=lat["p50"] / 1000,
            p99_ms=lat["p99"] / 1000,
            raw=raw,
        )


@dataclass
class Row:
    scenario: str
    target: str
    concurrency: int
    load: Load | None
    peak_rss_mb: float | None = None
    added: tuple[float, float] | None = None
    usage: RunCost | None = None


# --- the benchmark ----------------------------------------------------------------------------------


@dataclass
class Account:
    org_id: int
    key: str


@dataclass
class Bench:
    config: Config = field(default_factory=Config)
    services: list[Service] = field(default_factory=list)
    gateway_sent: int = 0  # every request written to the gateway, warm-ups and checks included

    # setup

    def gateway_env(self) -> dict[str, str]:
        return {
            "DATABASE_URL": self.config.database_url,
            "REDIS_URL": self.config.redis_url,
            "DJANGO_SETTINGS_MODULE": "hypereal.settings",
            "PYTHONUNBUFFERED": "1",
            **self.config.gateway_env,
        }

    def setup(self) -> None:
        self.server_core, self.client_core = cores()
        self.wrk = Wrk(ensure_wrk(), self.client_core)
        os.environ.update({k: v for k, v in self.gateway_env().items() if k not in self.config.gateway_env})
        self.reset_stores()
        log("migrating the benchmark database")
        subprocess.run(
            [PY, "manage.py", "migrate", "--noinput"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL
        )
        port = free_port()
        self.upstream_url = f"http://127.0.0.1:{port}"
        self.upstream = self.start(
            Service(
                "fake-upstream",
                [*pinned(self.client_core), PY, str(BENCH / "fake_upstream.py"), "--port", str(port)],
                f"{self.upstream_url}/health",
            )
        )
        self.account = self.create_account()
        port = free_port()
        self.gateway_url = f"http://127.0.0.1:{port}"
        log(f"starting one gateway process on core {self.server_core}")
        self.gateway = self.start(
            Service(
                "gateway",
                [
                    *pinned(self.server_core),
                    PY,
                    "-m",
                    "uvicorn",
                    "hypereal.asgi:application",
                    "--http",
                    "gateway.server:GatewayHttp",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--lifespan",
                    "on",
                    "--no-access-log",
                    "--log-level",
                    "warning",
                ],
                f"{self.gateway_url}/health",
                env=self.gateway_env(),
            )
        )
        self.check_answers()

    def start(self, service: Service) -> Service:
        self.services.append(service)
        return service

    def reset_stores(self) -> None:
        import psycopg
        import redis
        from psycopg import sql

        parsed = urlparse(self.config.database_url)
        name = parsed.path.lstrip("/")
        if "bench" not in name:
            raise SystemExit(f"Refusing to recreate database {name!r}: its name must contain 'bench'.")
        log(f"recreating database {name} and flushing {self.config.redis_url}")
        with psycopg.connect(parsed._replace(path="/postgres").geturl(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        with redis.Redis.from_url(self.config.redis_url) as client:
            client.flushdb()

    def create_account(self) -> Account:
        """A real organization, wallet, key and catalog entry, through the project's own services."""
        import django

        sys.path.insert(0, str(ROOT))
        django.setup()
        from django.db import connections

        from apikeys.services import api_key_create
        from billing.money import credits_to_micro
        from billing.services import wallet_credit
        from gateway.models import Provider
        from gateway.services import model_upsert, provider_upsert
        from orgs.services import organization_create, user_create

        provider = provider_upsert(
            name="bench-upstream",
            kind=Provider.Kind.OPENAI,
            base_url=f"{self.upstream_url}/v1",
            api_key="sk-bench-upstream",
        )
        model_upsert(
            public_id=MODEL, capability="chat", prices_per_mtok=PRICES, targets=[(provider, "bench-upstream")]
        )
        owner = user_create(email="bench@hypereal.local", password="bench-unused-password")
        org = organization_create(name="Bench", owner=owner)
        # Limits on (the limiter runs its Redis script on every call) but far above what one process can do.
        org.rate_limit_rpm = org.rate_limit_tpm = 2_000_000_000
        org.save(update_fields=["rate_limit_rpm", "rate_limit_tpm"])
        wallet_credit(
            organization_id=org.pk, amount=credits_to_micro(GRANT_CREDITS), idempotency_key="bench-grant"
        )
        _, plaintext = api_key_create(
            organization=org,
            name="bench",
            created_by=owner,
            monthly_spend_limit=credits_to_micro(1_000_000_000),
        )
        connections.close_all()
        return Account(org_id=org.pk, key=plaintext)

    def check_answers(self) -> None:
        """One call of each kind, directly and through the gateway: the load is only worth measuring if right."""
        import httpx

        auth = {"authorization": f"Bearer {self.account.key}", "content-type": "application/json"}
        for base, gateway in ((self.upstream_url, False), (self.gateway_url, True)):
            url = f"{base}/v1/chat/completions"
            reply = httpx.post(url, content=request_body(False), headers=auth, timeout=30)
            self.gateway_sent += gateway
            data = reply.json()
            assert reply.status_code == 200 and data["usage"]["completion_tokens"] == 20, (url, reply.text)
            if gateway:
                assert data["usage"]["cost"] > 0 and reply.headers["x-hypereal-credits"], reply.text
            reply = httpx.post(url, content=request_body(True), headers=auth, timeout=30)
            self.gateway_sent += gateway
            events = [line[6:] for line in reply.text.split("\n") if line.startswith("data: ")]
            chunks = [json.loads(e) for e in events if e != "[DONE]"]
            content = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
            usage = [c["usage"] for c in chunks if c.get("usage")]
            assert reply.status_code == 200 and events[-1] == "[DONE]" and len(content) == 20, (
                url,
                reply.text,
            )
            assert len(usage) == 1 and (not gateway or usage[0]["cost"] > 0), (url, reply.text)
        log("answers checked: non-stream and 20-chunk stream, direct and through the gateway")

    # measurements

    def gateway_load(self, *, stream: bool, connections: int, seconds: int, count: int = 0) -> Load:
        """Load through the gateway for ``seconds``, or until the upstream has answered ``count`` more calls."""
        until = None
        if count:
            target = self.upstream_answered() + count

            def until() -> bool:
                return self.upstream_answered() >= target

        load = self.wrk.run(
            f"{self.gateway_url}/v1/chat/completions",
            stream=stream,
            connections=connections,
            seconds=seconds,
            key=self.account.key,
            until=until,
        )
        self.gateway_sent += load.sent
        return load

    def upstream_answered(self) -> int:
        import httpx

        return httpx.get(f"{self.upstream_url}/stats", timeout=10).json()["chat"]

    def scenarios(self) -> list[Row]:
        rows = []
        cfg = self.config
        for stream in (False, True):
            name = "stream 20 chunks" if stream else "non-stream"
            for c in cfg.concurrency:
                # Directly: the fake upstream gets the core the gateway otherwise has.
                move_to_core(self.upstream.pid, self.server_core)
                url = f"{self.upstream_url}/v1/chat/completions"
                self.wrk.run(url, stream=stream, connections=c, seconds=cfg.warmup)
                meter = CpuWatch(self.upstream.pid, self.server_core)
                direct = self.wrk.run(url, stream=stream, connections=c, seconds=cfg.duration)
                usage = meter.done(direct.requests)
                move_to_core(self.upstream.pid, self.client_core)
                rows.append(Row(name, "direct", c, direct, usage=usage))
                log(
                    f"{name:17} direct   c={c:<3} {direct.rps:9.0f} req/s  p50 {direct.p50_ms:.2f} ms  "
                    f"p99 {direct.p99_ms:.2f} ms"
                )
                # Through the gateway.
                self.gateway_load(stream=stream, connections=c, seconds=cfg.warmup)
                reset_peak_rss(self.gateway.pid)
                meter = CpuWatch(self.gateway.pid, self.server_core)
                load = self.gateway_load(stream=stream, connections=c, seconds=cfg.duration)
                row = Row(
                    name,
                    "gateway",
                    c,
                    load,
                    peak_rss_mb=peak_rss(self.gateway.pid) / MiB,
                    added=(load.p50_ms - direct.p50_ms, load.p99_ms - direct.p99_ms),
                    usage=meter.done(load.requests),
                )
                rows.append(row)
                log(
                    f"{name:17} gateway  c={c:<3} {load.rps:9.0f} req/s  p50 {load.p50_ms:.2f} ms  "
                    f"p99 {load.p99_ms:.2f} ms  errors {load.errors}  peak RSS {row.peak_rss_mb:.1f} MB  "
                    f"CPU {row.usage.cpu_ms_per_request:.2f} ms/req  others on core {row.usage.others_pct:.0f} %"
                )
        return rows

    def soak(self) -> dict | None:
        """RSS after a warm-up vs after BENCH_SOAK_REQUESTS non-stream calls (sampled every quarter)."""
        cfg = self.config
        if cfg.soak_requests <= 0:
            return None
        c = cfg.soak_concurrency
        log(f"soak: warm-up {cfg.soak_warmup} requests, then {cfg.soak_requests} at c={c}")
        if cfg.soak_warmup:
            self.gateway_load(
                stream=False, connections=c, seconds=cfg.soak_max_seconds, count=cfg.soak_warmup
            )
        time.sleep(1)  # let background settlements and the meter's flush finish
        samples = [(0, rss(self.gateway.pid))]
        done, errors, started = 0, 0, time.monotonic()
        reset_peak_rss(self.gateway.pid)
        quarter = -(-cfg.soak_requests // 4)
        while done < cfg.soak_requests:
            load = self.gateway_load(
                stream=False,
                connections=c,
                seconds=cfg.soak_max_seconds,
                count=min(quarter, cfg.soak_requests - done),
            )
            done += load.requests
            if load.seconds >= cfg.soak_max_seconds:  # too slow to finish in time: report what it did
                break
            errors += load.errors
            time.sleep(1)
            samples.append((done, rss(self.gateway.pid)))
            log(f"soak: {done} requests, RSS {samples[-1][1] / MiB:.1f} MB")
        elapsed = time.monotonic() - started
        growth = (samples[-1][1] - samples[0][1]) / MiB
        return {
            "requests": done,
            "errors": errors,
            "seconds": elapsed,
            "samples": samples,
            "growth_mb": growth,
            "peak_mb": peak_rss(self.gateway.pid) / MiB,
            "flat": growth <= cfg.mem_tolerance_mb,
            "complete": done >= cfg.soak_requests,
        }

    def billing_check(self) -> dict:
        """Every request sent through the gateway has its RequestLog row; charges match the logs."""
        import httpx
        from django.db import connections
        from django.db.models import Count, Sum

        from billing.models import LedgerEntry, Wallet
        from billing.money import credits_to_micro
        from usage.models import RequestLog

        time.sleep(1)  # requests abandoned by wrk at the end of a run finish (or are cancelled) meanwhile
        deadline = time.monotonic() + 30
        while True:
            reply = httpx.get(
                f"{self.gateway_url}/v1/credits",
                timeout=30,
                headers={"authorization": f"Bearer {self.account.key}"},
            )
            assert reply.status_code == 200, reply.text
            logs = RequestLog.objects.filter(organization_id=self.account.org_id)
            rows = logs.count()
            if rows >= self.gateway_sent or time.monotonic() > deadline:
                break
            time.sleep(0.5)  # polling for in-flight calls to be written, bounded by the deadline
        statuses = dict(logs.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
        cost = logs.aggregate(c=Sum("cost"), u=Sum("uncollected"))
        wallet = Wallet.objects.get(organization_id=self.account.org_id)
        charges = LedgerEntry.objects.filter(wallet=wallet, kind=LedgerEntry.Kind.CHARGE)
        charged = charges.aggregate(n=Count("id"), s=Sum("amount"))
        billed_rows = logs.filter(cost__gt=0).count()
        result = {
            "sent": self.gateway_sent,
            "logged": rows,
            "statuses": statuses,
            "billed_rows": billed_rows,
            "ledger_charges": charged["n"],
            "cost_micro": cost["c"] or 0,
            "charged_micro": -(charged["s"] or 0),
            "balance_micro": wallet.balance,
            "credits_api": reply.json()["balance"],
            "expected_balance_micro": credits_to_micro(GRANT_CREDITS) + (charged["s"] or 0),
        }
        result["ok"] = (
            rows == self.gateway_sent
            and billed_rows == charged["n"]
            and result["cost_micro"] - (cost["u"] or 0) == result["charged_micro"]
            and wallet.balance == result["expected_balance_micro"]
        )
        connections.close_all()
        return result

    def teardown(self) -> None:
        for service in reversed(self.services):
            service.stop()
        self.services.clear()


# --- LiteLLM (optional) -------------------------------------------------------------------------------

LITELLM_VENV = BENCH / ".litellm-venv"
LITELLM_REQUIREMENTS = ["litellm[proxy]==1.97.0", "fastapi==0.136.3"]


def litellm_rows(bench: Bench, direct: dict[tuple[str, int], Load]) -> tuple[list[Row], str]:
    """The same scenarios through a LiteLLM proxy (one worker, same core, no database: no accounting)."""
    exe = LITELLM_VENV / "bin" / "litellm"
    if not exe.exists():
        uv = shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
        log(f"installing {' '.join(LITELLM_REQUIREMENTS)} into {LITELLM_VENV.relative_to(ROOT)}")
        try:
            subprocess.run(
                [uv, "venv", "--quiet", "--python", PY, str(LITELLM_VENV)], check=True, timeout=300
            )
            subprocess.run(
                [
                    uv,
                    "pip",
                    "install",
                    "--quiet",
                    "--python",
                    str(LITELLM_VENV / "bin" / "python"),
                    *LITELLM_REQUIREMENTS,
                ],
                check=True,
                timeout=900,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            return [], f"LiteLLM skipped: install failed ({exc})"
    port = free_port()
    master = "sk-bench-litellm-master"
    config = BENCH / ".litellm-venv" / "bench-config.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        "      model: openai/bench-upstream\n"
        f"      api_base: {bench.upstream_url}/v1\n"
        "      api_key: sk-bench-upstream\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "  set_verbose: false\n"
        "general_settings:\n"
        f"  master_key: {master}\n"
    )
    logfile = (BENCH / ".litellm-venv" / "proxy.log").open("w")
    # No database for LiteLLM (it would need Prisma): drop the benchmark's DATABASE_URL / REDIS_URL.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}
    }
    env.update(LITELLM_LOG="ERROR", LITELLM_TELEMETRY="False")
    try:
        service = Service(
            "litellm",
            [
                *pinned(bench.server_core),
                str(exe),
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--num_workers",
                "1",
            ],
            f"http://127.0.0.1:{port}/health/liveliness",
            env=env,
            timeout=180,
            stdout=logfile,
            inherit_env=False,
        )
    except (RuntimeError, OSError) as exc:
        return [], f"LiteLLM skipped: the proxy did not start ({exc}); see bench/.litellm-venv/proxy.log"
    bench.start(service)
    rows = []
    try:
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        for stream in (False, True):
            name = "stream 20 chunks" if stream else "non-stream"
            for c in bench.config.concurrency:
                bench.wrk.run(url, stream=stream, connections=c, seconds=bench.config.warmup, key=master)
                reset_peak_rss(service.pid)
                meter = CpuWatch(service.pid, bench.server_core)
                load = bench.wrk.run(
                    url, stream=stream, connections=c, seconds=bench.config.duration, key=master
                )
                base = direct[(name, c)]
                rows.append(
                    Row(
                        name,
                        "litellm",
                        c,
                        load,
                        peak_rss_mb=peak_rss(service.pid) / MiB,
                        added=(load.p50_ms - base.p50_ms, load.p99_ms - base.p99_ms),
                        usage=meter.done(load.requests),
                    )
                )
                log(
                    f"{name:17} litellm  c={c:<3} {load.rps:9.0f} req/s  p50 {load.p50_ms:.2f} ms  "
                    f"p99 {load.p99_ms:.2f} ms  errors {load.errors}"
                )
    finally:
        service.stop()
        bench.services.remove(service)
    return rows, "LiteLLM 1.97.0 proxy, one worker, same core, no database (so no spend logs or budgets)"


# --- report -------------------------------------------------------------------------------------------

HEADER = [
    "scenario",
    "target",
    "conc.",
    "req/s",
    "p50 ms",
    "p99 ms",
    "added p50 / p99 ms",
    "peak RSS MB",
    "errors",
    "CPU ms/req",
    "others on core %",
]


def table_cells(rows: list[Row]) -> list[list[str]]:
    cells = []
    for r in rows:
        load = r.load
        cells.append(
            [
                r.scenario,
                r.target,
                str(r.concurrency),
                f"{load.rps:,.0f}",
                f"{load.p50_ms:.2f}",
                f"{load.p99_ms:.2f}",
                f"+{r.added[0]:.2f} / +{r.added[1]:.2f}".replace("+-", "-") if r.added else "—",
                f"{r.peak_rss_mb:.1f}" if r.peak_rss_mb is not None else "—",
                str(load.errors),
                f"{r.usage.cpu_ms_per_request:.3f}" if r.usage else "—",
                f"{r.usage.others_pct:.0f}" if r.usage else "—",
            ]
        )
    return cells


def text_table(rows: list[Row]) -> str:
    cells = [HEADER, *table_cells(rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(HEADER))]
    lines = []
    for n, row in enumerate(cells):
        lines.append(
            " | ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths)))
        )
        if n == 0:
            lines.append("-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: list[Row]) -> str:
    lines = [
        "| " + " | ".join(HEADER) + " |",
        "|" + "|".join(["---", "---"] + ["---:"] * (len(HEADER) - 2)) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in table_cells(rows)]
    return "\n".join(lines)


def verdicts(rows: list[Row], soak: dict | None, billing: dict) -> list[tuple[bool, str]]:
    def find(scenario: str, target: str, c: int) -> Row | None:
        return next((r for r in rows if (r.scenario, r.target, r.concurrency) == (scenario, target, c)), None)

    out = []
    for scenario in ("non-stream", "stream 20 chunks"):
        if r := find(scenario, "gateway", 1):
            out.append(
                (
                    r.added[0] <= 1.0 and r.added[1] <= 3.0,
                    f"{scenario}, concurrency 1: added p50 {r.added[0]:.2f} ms (≤ 1), "
                    f"added p99 {r.added[1]:.2f} ms (≤ 3)",
                )
            )
    top = max((r.concurrency for r in rows if r.target == "gateway"), default=None)
    for scenario, need in (("non-stream", 1000), ("stream 20 chunks", 300)):
        if top and (r := find(scenario, "gateway", top)):
            out.append(
                (
                    r.load.rps >= need and r.load.errors == 0,
                    f"{scenario}, one core, concurrency {top}: {r.load.rps:,.0f} req/s (≥ {need:,}), "
                    f"{r.load.errors} errors",
                )
            )
    if soak:
        out.append(
            (
                soak["flat"] and soak["complete"] and soak["errors"] == 0,
                f"memory flat: RSS {soak['samples'][0][1] / MiB:.1f} MB after warm-up → "
                f"{soak['samples'][-1][1] / MiB:.1f} MB after {soak['requests']:,} requests "
                f"({soak['growth_mb']:+.1f} MB; tolerance {Config().mem_tolerance_mb:g} MB), "
                f"{soak['errors']} errors",
            )
        )
    out.append(
        (
            billing["ok"],
            f"billing: {billing['logged']:,} RequestLog rows for {billing['sent']:,} requests "
            f"sent through the gateway; {billing['ledger_charges']:,} ledger charges for "
            f"{billing['billed_rows']:,} priced rows; wallet balance matches the ledger",
        )
    )
    return out


CALIBRATION = """
import time
best = 1e9
for _ in range(5):
    t = time.perf_counter()
    x = 0
    for i in range(1_000_000):
        x += i
    best = min(best, time.perf_counter() - t)
print(best * 1000)
"""


def calibration(core: int | None) -> float:
    """ns per iteration of a plain Python loop on the gateway's core: how fast this machine runs Python."""
    out = subprocess.run([*pinned(core), PY, "-c", CALIBRATION], capture_output=True, text=True, check=True)
    return float(out.stdout)


def environment() -> str:
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(  # the benchmark's own outputs, left by an earlier run, change no code
        ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)bench/results.md",
         ":(exclude)bench/profile.md"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    wrk_version = [
        subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split(" Copyright")[0]
    ]
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {commit}{' (with local changes)' if dirty else ''}, "
        f"{os.cpu_count()} × {cpu}, Python {platform.python_version()}, {' '.join(wrk_version)}, "
        f"load average before the run {LOAD_BEFORE}, Python speed on the gateway's core "
        f"{CALIBRATION_NS:.0f} ns per loop iteration (`for i in range(n): x += i`; lower is faster)"
    )


def report(cfg: Config, rows: list[Row], soak: dict | None, billing: dict, notes: list[str]) -> str:
    checks = verdicts(rows, soak, billing)
    lines = [
        "# Hypereal load benchmark",
        "",
        f"{environment()}.",
        "",
        "One gateway process (uvicorn `hypereal.asgi:application`, uvloop + httptools, pinned to one core, with "
        "its metering writer child on the same core) on "
        "PostgreSQL + Redis with all accounting on (key auth, wallet reservation, per-key spending-limit "
        "reservation, RPM/TPM limiter, metered charge + request log). Load from `wrk` (one thread, on the "
        "other core, with the fake upstream). `direct` = wrk straight to the fake upstream (0 ms, which then "
        f"has the first core). Each row: {cfg.warmup} s warm-up, then {cfg.duration} s measured. Latency of a "
        "stream is the whole stream (20 content chunks + finish + usage + [DONE]). Peak RSS is the VmHWM "
        "of the gateway and its child processes during the measured part (reset after warm-up). CPU ms/req = "
        "CPU time of the measured processes (gateway, all threads and children; for `direct`, the fake "
        "upstream) per request: one core's capacity is about "
        "1000 / that. Others on core = share of that core used meanwhile by other processes (PostgreSQL and "
        "Redis when the scheduler puts them there, and anything else running on the machine): when it is "
        "high, the req/s and latency of that row understate the gateway.",
        "",
        markdown_table(rows),
        "",
        "## Checks against the budget",
        "",
        *[f"- {'PASS' if ok else 'FAIL'}: {text}" for ok, text in checks],
        "",
    ]
    if soak:
        lines += [
            "## Memory over the soak",
            "",
            f"{soak['requests']:,} non-stream requests at concurrency {cfg.soak_concurrency} in "
            f"{soak['seconds']:.0f} s after a {cfg.soak_warmup:,}-request warm-up; peak RSS "
            f"{soak['peak_mb']:.1f} MB.",
            "",
            "| requests | RSS MB |",
            "|---:|---:|",
            *[f"| {n:,} | {b / MiB:.1f} |" for n, b in soak["samples"]],
            "",
        ]
    lines += [
        "## Billing",
        "",
        f"- requests sent through the gateway (wrk's writes, warm-ups and checks included): {billing['sent']:,}",
        f"- RequestLog rows for the organization: {billing['logged']:,} (by status: "
        + ", ".join(f"{s}: {n:,}" for s, n in sorted(billing["statuses"].items()))
        + ")",
        f"- ledger charges: {billing['ledger_charges']:,}, totalling {billing['charged_micro'] / 1e6:,.6f} "
        f"credits (logged cost {billing['cost_micro'] / 1e6:,.6f})",
        f"- wallet balance {billing['balance_micro'] / 1e6:,.6f} credits; /v1/credits says "
        f"{billing['credits_api']}",
        "",
    ]
    if cfg.gateway_env:
        notes.append(
            "gateway settings changed for this run: "
            + ", ".join(f"`{k}={v}`" for k, v in cfg.gateway_env.items())
        )
    if notes:
        lines += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    return "\n".join(lines)


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


LOAD_BEFORE = ""
CALIBRATION_NS = 0.0


def main() -> int:
    global LOAD_BEFORE, CALIBRATION_NS
    signal.signal(signal.SIGTERM, _terminate)  # stop the services we started on the way out
    cfg = Config()
    LOAD_BEFORE = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    CALIBRATION_NS = calibration(cores()[0])
    bench = Bench(cfg)
    notes: list[str] = []
    try:
        bench.setup()
        rows = bench.scenarios()
        soak = bench.soak()
        billing = bench.billing_check()
        if cfg.litellm:
            direct = {(r.scenario, r.concurrency): r.load for r in rows if r.target == "direct"}
            extra, note = litellm_rows(bench, direct)
            log(note)
            rows += extra
            notes.append(note)
            rows.sort(
                key=lambda r: (r.scenario, r.concurrency, ("direct", "gateway", "litellm").index(r.target))
            )
    finally:
        bench.teardown()
    rows.sort(
        key=lambda r: (
            r.scenario != "non-stream",
            r.concurrency,
            ("direct", "gateway", "litellm").index(r.target),
        )
    )
    print()
    print(text_table(rows))
    print()
    for ok, text in verdicts(rows, soak, billing):
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    cfg.results.write_text(report(cfg, rows, soak, billing, notes))
    print(f"\nWritten to {cfg.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
