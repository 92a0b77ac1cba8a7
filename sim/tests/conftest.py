"""The simulator runs as a real server in a subprocess, exactly as the gateway's suite and demo run it;
webhooks it sends land in a real loopback receiver."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def sim_url() -> Iterator[str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "sim", "--port", str(port)], cwd=ROOT)
    deadline = time.monotonic() + 20
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the simulator exited with {proc.returncode}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the simulator did not become healthy")
            time.sleep(0.05)  # poll interval while the server boots
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@dataclass
class Receiver:
    """A loopback webhook target: records every POST by path and answers the status a path ends in
    (``…/500`` answers 500), 200 otherwise."""

    url: str
    received: dict[str, list[tuple[dict[str, str], bytes]]] = field(default_factory=lambda: defaultdict(list))
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def target(self, status: int = 200) -> str:
        """A fresh URL, so each test sees only its own deliveries."""
        return f"{self.url}/{uuid.uuid4()}/{status}"

    def bodies(self, target: str) -> list[dict]:
        return [json.loads(body) for _, body in self.received[urlsplit(target).path]]

    def wait(self, target: str, count: int, timeout: float = 10) -> list[dict]:
        """The deliveries to ``target`` once there are ``count``, for webhooks sent in real time."""
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.received[urlsplit(target).path]) >= count, timeout)
        return self.bodies(target)


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            with hook.arrived:
                hook.received[self.path].append((dict(self.headers), body))
                hook.arrived.notify_all()
            status = self.path.rsplit("/", 1)[-1]
            self.send_response(int(status) if status.isdigit() else 200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass  # quiet test output

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook = Receiver(f"http://127.0.0.1:{server.server_port}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield hook
    server.shutdown()
