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


def _manage(*args: str, env: dict) -> str:
    return subprocess.run([PYTHON, "manage.py", *args], env=env, check=True, stdout=subprocess.PIPE,
                          text=True).stdout


def _wait_healthy(url: str, procs: list[subprocess.Popen], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise SystemExit("A service exited during start-up; see the output above.")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)  # polling a condition, with a deadline
    raise SystemExit(f"{url} did not become healthy within {timeout:.0f} s.")


def banner(url: str, key: str, password: str) -> str:
    return f"""
  Hypereal is running at {url}
  Admin:      {url}/admin/   login demo@hypereal.local / {password}
  API key:    {key}

  curl {url}/api/v1/chat/completions \\
    -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\
    -d '{{"model": "gpt-5.5", "messages": [{{"role": "user", "content": "Hello"}}]}}'

  python -c 'from openai import OpenAI; c = OpenAI(base_url="{url}/api/v1", api_key="{key}"); \\
print(c.chat.completions.create(model="gpt-5.5", messages=[{{"role": "user", "content": "Hello"}}]).choices[0].message.content)'

  Press Ctrl-C to stop everything.
"""


def main() -> None:
    host, port = os.environ.get("HOST", "127.0.0.1"), os.environ.get("PORT", "8000")
    sim_port = os.environ.get("SIM_PORT", "9100")
    env = {**os.environ, "HYPEREAL_SIMULATOR_URL": f"http://127.0.0.1:{sim_port}", "PYTHONUNBUFFERED": "1"}
    password = env.setdefault("HYPEREAL_DEMO_PASSWORD", "hypereal-demo")
    _manage("migrate", "--noinput", env=env)
    key = _manage("bootstrap_demo", "--print-key", env=env).strip().splitlines()[-1]
    procs = [
        subprocess.Popen([PYTHON, "-m", "sim", "--host", "127.0.0.1", "--port", sim_port], env=env),
        subprocess.Popen([PYTHON, "-m", "uvicorn", "hypereal.asgi:application", "--host", host, "--port", port,
                          "--lifespan", "on", "--no-access-log", "--log-level", "warning"], env=env),
        subprocess.Popen([PYTHON, "-m", "celery", "-A", "hypereal", "worker", "--beat", "--pool", "solo",
                          "--loglevel", "warning", "--schedule", str(VAR_DIR / "celerybeat-schedule")], env=env),
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
        sys.exit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    url = f"http://{host}:{port}"
    try:
        _wait_healthy(f"http://127.0.0.1:{sim_port}/health", procs)
        _wait_healthy(f"{url}/health", procs)
    except SystemExit:
        stop()
    print(banner(url, key, password), flush=True)
    while all(p.poll() is None for p in procs):
        time.sleep(0.5)
    print("A service stopped unexpectedly; shutting down.", flush=True)
    stop()


if __name__ == "__main__":
    main()
