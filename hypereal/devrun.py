"""`make run`: migrate, bootstrap the demo, then run gateway + simulator + Celery worker until Ctrl-C."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

PYTHON = sys.executable
VAR_DIR = Path(os.environ.get("HYPEREAL_VAR_DIR", Path(__file__).resolve().parent.parent / "var"))
WORKER_LOG = VAR_DIR / "worker.log"  # Celery's output (its banner, warnings), kept out of the banner below


def _manage(*args: str, env: dict) -> str:
    return subprocess.run([PYTHON, "manage.py", *args], env=env, check=True, stdout=subprocess.PIPE,
                          text=True).stdout


def _wait_healthy(url: str, procs: list[subprocess.Popen], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise SystemExit(f"A service exited during start-up; see the output above and {WORKER_LOG}.")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)  # polling a condition, with a deadline
    raise SystemExit(f"{url} did not become healthy within {timeout:.0f} s.")


# The dashboard's first look: a few real calls with the demo key (the simulator answers), so /usage has data.
SAMPLE_CALLS = (
    ("/api/v1/chat/completions", {"model": "gpt-5.5", "messages": [{"role": "user", "content": "Hello"}]}),
    ("/api/v1/chat/completions", {"model": "gpt-5.4-mini", "stream": True, "stream_options": {"include_usage": True},
                                  "messages": [{"role": "user", "content": "Stream a haiku"}]}),
    ("/api/v1/messages", {"model": "claude-sonnet-4-6", "max_tokens": 256,
                          "messages": [{"role": "user", "content": "Hi Claude"}]}),
    ("/api/v1/chat/completions", {"model": "sim-flaky",  # its first target fails: the log shows the fallback
                                  "messages": [{"role": "user", "content": "Fall back, please"}]}),
)


def _sample_traffic(url: str, key: str) -> int:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        served = sum(client.post(path, json=body).status_code == 200 for path, body in SAMPLE_CALLS)
        client.get("/api/v1/credits")  # writes their charges and logs now
    return served


def banner(url: str, key: str, password: str, samples: int) -> str:
    return f"""
  Hypereal is running at {url}

  Dashboard:  {url}/usage
  Sign in as: demo@hypereal.local / {password}
  Playground: {url}/playground
  Models:     {url}/models
  Admin:      {url}/admin/   (the same login)
  API key:    {key}   (organization `demo`; {samples} sample calls made with it)

  curl {url}/api/v1/chat/completions \\
    -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\
    -d '{{"model": "gpt-5.5", "messages": [{{"role": "user", "content": "Hello"}}]}}'

  python -c 'from openai import OpenAI; c = OpenAI(base_url="{url}/api/v1", api_key="{key}"); \\
print(c.chat.completions.create(model="gpt-5.5", messages=[{{"role": "user", "content": "Hello"}}]).choices[0].message.content)'

  Emails (sign-up links, password resets) are printed below; the worker logs to {WORKER_LOG}
  Press Ctrl-C to stop everything.
"""


def main() -> None:
    host, port = os.environ.get("HOST", "127.0.0.1"), os.environ.get("PORT", "8000")
    sim_port = os.environ.get("SIM_PORT", "9100")
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"  # where a browser reaches it
    # Signed links (images, videos, emails) point where this server listens, unless configured otherwise.
    env = {"HYPEREAL_PUBLIC_URL": url, **os.environ, "HYPEREAL_SIMULATOR_URL": f"http://127.0.0.1:{sim_port}",
           "PYTHONUNBUFFERED": "1"}
    password = env.setdefault("HYPEREAL_DEMO_PASSWORD", "hypereal-demo")
    _manage("migrate", "--noinput", env=env)
    key = _manage("bootstrap_demo", "--print-key", env=env).strip().splitlines()[-1]
    worker_log = open(WORKER_LOG, "w")
    procs = [
        subprocess.Popen([PYTHON, "-m", "sim", "--host", "127.0.0.1", "--port", sim_port], env=env),
        subprocess.Popen([PYTHON, "-m", "uvicorn", "hypereal.asgi:application", "--http",
                          "gateway.server:GatewayHttp", "--host", host, "--port", port, "--lifespan", "on",
                          "--no-access-log", "--log-level", "warning"], env=env),
        subprocess.Popen([PYTHON, "-m", "celery", "-A", "hypereal", "worker", "--beat", "--pool", "solo",
                          "--loglevel", "warning", "--schedule", str(VAR_DIR / "celerybeat-schedule")], env=env,
                         stdout=worker_log, stderr=subprocess.STDOUT),
    ]

    def stop(*_):
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        worker_log.close()
        sys.exit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        _wait_healthy(f"http://127.0.0.1:{sim_port}/health", procs)
        _wait_healthy(f"{url}/health", procs)
    except SystemExit:
        stop()
    try:
        samples = _sample_traffic(url, key)
    except httpx.HTTPError as exc:
        print(f"The sample calls failed ({exc}); the dashboard starts empty.", flush=True)
        samples = 0
    print(banner(url, key, password, samples), flush=True)
    while all(p.poll() is None for p in procs):
        time.sleep(0.5)
    print(f"A service stopped unexpectedly (the worker's log: {WORKER_LOG}); shutting down.", flush=True)
    stop()


if __name__ == "__main__":
    main()
