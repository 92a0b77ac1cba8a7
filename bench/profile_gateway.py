"""Where a gateway request's time goes: py-spy samples the benchmark's gateway process under load.

`uv run python bench/profile_gateway.py`: same set-up as bench/run.py (one gateway
process pinned to core 0, PostgreSQL + Redis, full accounting, fake upstream), then for each scenario
runs wrk while py-spy records the gateway. py-spy lives in its own virtualenv, bench/.tools-venv, so
the project's dependencies are untouched.

Writes, per scenario, the raw collapsed stacks (bench/profiles/<scenario>.txt, for flamegraph tools or
speedscope) and a ranked summary of functions by inclusive and self time to bench/profile.md.

Settings: BENCH_PROFILE_SECONDS (20), BENCH_PROFILE_RATE (samples/s, 200), BENCH_PROFILE_SCENARIOS
("non-stream:32,stream:32,non-stream:1"), BENCH_PROFILE_TOP (30), BENCH_PROFILE_NATIVE (0; 1 = C frames
too, e.g. inside uvloop, at the cost of pausing the process for each sample), plus bench/run.py's database settings.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import BENCH, ROOT, Bench, Config, log, pinned

TOOLS_VENV = BENCH / ".tools-venv"
PROFILES = BENCH / "profiles"
SECONDS = int(os.environ.get("BENCH_PROFILE_SECONDS", 20))
RATE = int(os.environ.get("BENCH_PROFILE_RATE", 200))
TOP = int(os.environ.get("BENCH_PROFILE_TOP", 30))
NATIVE = os.environ.get("BENCH_PROFILE_NATIVE", "0").lower() in {"1", "true", "yes"}
SCENARIOS = [
    (kind, int(c))
    for kind, c in (
        s.split(":")
        for s in os.environ.get("BENCH_PROFILE_SCENARIOS", "non-stream:32,stream:32,non-stream:1").split(",")
    )
]


def py_spy() -> str:
    exe = TOOLS_VENV / "bin" / "py-spy"
    if not exe.exists():
        uv = shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
        log(f"installing py-spy into {TOOLS_VENV.relative_to(ROOT)}")
        subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(TOOLS_VENV)], check=True)
        subprocess.run(
            [uv, "pip", "install", "--quiet", "--python", str(TOOLS_VENV / "bin" / "python"), "py-spy"],
            check=True,
        )
    return str(exe)


FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def short(frame: str) -> str:
    """`func (path/to/file.py:12)` → `func (pkg/file.py)` with the line dropped, site-packages trimmed."""
    m = FRAME.match(frame)
    if not m:
        return frame
    path = m.group("file")
    for marker in ("site-packages/", "lib/python3.11/", str(ROOT) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{m.group('func')} ({path})"


def owner(frame: str) -> str:
    """The library (or gateway module) of one raw py-spy frame `func (path:line)`."""
    m = FRAME.match(frame)
    if not m:
        return frame
    func, path = m.group("func"), m.group("file")
    if func == "Runner.run":
        return "event loop itself (C: uvloop, socket syscalls, task switching; no Python frame)"
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if path.startswith(str(ROOT) + "/"):
        rel = path[len(str(ROOT)) + 1 :]
        return rel if rel.startswith("gateway/") else rel.split("/", 1)[0] + "/"
    if "/lib/python3" in path:
        return "stdlib " + path.split("/lib/python3", 1)[1].split("/", 1)[1].split("/", 1)[0].removesuffix(
            ".py"
        )
    if path.startswith("gateway/"):  # py-spy shortens paths: gateway modules by file, the rest by package
        return path
    return path.split("/", 1)[0].removesuffix(".py")


def summarize(raw: Path, title: str) -> str:
    """Inclusive and self time per function over the event-loop thread's samples."""
    stacks: list[tuple[list[str], int, str, str]] = []
    threads: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        thread = frames[0] if frames[0].startswith(("thread", "process")) else ""
        n = int(count)
        threads[thread] += n
        stacks.append(
            ([short(f) for f in frames if not f.startswith(("thread", "process"))], n, thread, frames[-1])
        )
    main_thread = threads.most_common(1)[0][0] if threads else ""
    total = sum(n for _, n, t, _ in stacks if t == main_thread) or 1
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    libraries: Counter[str] = Counter()
    for frames, n, thread, leaf in stacks:
        if thread != main_thread or not frames:
            continue
        for name in set(frames):
            inclusive[name] += n
        own[frames[-1]] += n
        libraries[owner(leaf)] += n
    lines = [
        f"## {title}",
        "",
        f"{total:,} samples of the event-loop thread ({main_thread or 'one thread'}); other threads: "
        + (", ".join(f"{t} {n:,}" for t, n in threads.items() if t != main_thread) or "none")
        + ".",
        "",
        "Self time by library (leaf frame's package):",
        "",
        "| % | library |",
        "|---:|---|",
        *[f"| {100 * n / total:.1f} | {name} |" for name, n in libraries.most_common(15)],
        "",
        "| inclusive % | self % | function |",
        "|---:|---:|---|",
    ]
    for name, n in inclusive.most_common(TOP):
        lines.append(f"| {100 * n / total:.1f} | {100 * own[name] / total:.1f} | `{name}` |")
    lines += ["", "Top self time:", "", "| self % | function |", "|---:|---|"]
    for name, n in own.most_common(TOP):
        lines.append(f"| {100 * n / total:.1f} | `{name}` |")
    return "\n".join(lines) + "\n"


def main() -> int:
    spy = py_spy()
    PROFILES.mkdir(exist_ok=True)
    bench = Bench(Config())
    sections = []
    try:
        bench.setup()
        for kind, c in SCENARIOS:
            stream = kind == "stream"
            bench.gateway_load(stream=stream, connections=c, seconds=3)  # warm-up
            raw = PROFILES / f"{kind}-c{c}.txt"
            log(f"profiling {kind} c={c} for {SECONDS} s")
            spy_proc = subprocess.Popen(
                [
                    *pinned(bench.client_core),
                    spy,
                    "record",
                    "--pid",
                    str(bench.gateway.pid),
                    "--rate",
                    str(RATE),
                    "--duration",
                    str(SECONDS),
                    "--format",
                    "raw",
                    "--threads",
                    "--output",
                    str(raw),
                    *(["--native"] if NATIVE else ["--nonblocking"]),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            load = bench.gateway_load(stream=stream, connections=c, seconds=SECONDS + 2)
            _, err = spy_proc.communicate(timeout=120)
            if spy_proc.returncode != 0:
                raise RuntimeError(f"py-spy failed: {err}")
            sections.append(
                summarize(
                    raw,
                    f"{kind}, concurrency {c}: {load.rps:,.0f} req/s, p50 {load.p50_ms:.2f} ms, "
                    f"p99 {load.p99_ms:.2f} ms (while sampled at {RATE}/s)",
                )
            )
    finally:
        bench.teardown()
    text = (
        "# Gateway profile under load\n\npy-spy samples of the one gateway process (event-loop thread only; "
        "idle time in the loop's poll is not sampled), with bench/run.py's set-up. Inclusive % = share of "
        "samples with the function anywhere on the stack.\n\n" + "\n".join(sections)
    )
    (BENCH / "profile.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
