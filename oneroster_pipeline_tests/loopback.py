"""Loopback helpers for the tests: a port nothing listens on (a server's port to take, or the port of a dead provider
URL), and a small OneRoster REST server whose records a test controls."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago: bound, then closed, so nothing listens there now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RosterServer:
    """GET `prefix`/orgs and `prefix`/students on 127.0.0.1 with limit/offset paging and X-Total-Count, each page from
    `page(collection, offset, limit) -> (records, total)`; any other path is a OneRoster 404. A context manager."""

    def __init__(self, page: Callable[[str, int, int], tuple[list, int]], prefix: str) -> None:
        self.prefix = prefix

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                collection = url.path.removeprefix(prefix).strip("/")
                if collection not in ("orgs", "students"):
                    self._send(404, {"imsx_codeMajor": "failure", "imsx_description": "unknown path"})
                    return
                records, total = page(collection, int(query.get("offset", 0)), int(query.get("limit", 100)))
                self._send(200, {"orgs" if collection == "orgs" else "users": records}, total)

            def _send(self, status: int, body: dict, total: int | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if total is not None:
                    self.send_header("X-Total-Count", str(total))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{self.prefix}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
