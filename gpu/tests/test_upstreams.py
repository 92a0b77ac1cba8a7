"""The job upstreams' HTTP client, against a real server on loopback."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gpu import upstreams

pytestmark = pytest.mark.no_services


def test_a_cookie_an_upstream_sets_is_never_sent_back():
    """One client carries every organization's jobs: a cookie one answer sets (a load balancer's, a bot
    check's) must not ride on the next request, whoever makes it."""
    seen = []

    class Upstream(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Cookie"))
            self.send_response(200)
            self.send_header("Set-Cookie", "affinity=organization-a; Path=/")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("localhost", 0), Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for _ in range(2):  # by name, not address: cookie jars keep cookies for names
            assert upstreams.send("GET", f"http://localhost:{server.server_port}/v1/videos/v1").json() == {}
    finally:
        server.shutdown()
        server.server_close()
    assert seen == [None, None]
