"""A hostile OneRoster provider for the tests: real HTTP on loopback, written here from the standard library (not
the project's demo provider), whose every answer a test can script.

`HostileProvider` serves an honest OneRoster 1.2 district (OAuth 2.0 client credentials, limit/offset paging,
`X-Total-Count`) until a test sets `behaviour`: a function `(request, handler) -> bool` that may answer the request
itself however it likes (redirects, echoes, endless or dripping bodies, broken records) and returns True when it
did. Every request is recorded (`requests`), headers and body included, so a test can tell what reached the server.
"""

from __future__ import annotations

import gzip
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

BASE_PATH = "/ims/oneroster/rostering/v1p2"
TOKEN_PATH = "/oauth/token"
CLIENT_ID = "hostile-client"
# characters a form body and a query string encode ('/', '+', '='): an echo shows the encoded form
CLIENT_SECRET = "Sup3r/Secret+Value=9f8e7d6c"


@dataclass
class Seen:
    method: str
    path: str
    query: dict
    headers: dict
    body: bytes


@dataclass
class District:
    schools: int = 3
    students: int = 120

    def orgs(self) -> list[dict]:
        district = {"sourcedId": "dist-1", "status": "active", "dateLastModified": "2025-01-01T00:00:00Z",
                    "name": "Hostile District", "type": "district", "identifier": "D1"}
        return [district] + [{"sourcedId": f"sch-{n}", "status": "active", "name": f"School {n}",
                               "dateLastModified": "2025-01-01T00:00:00Z", "type": "school", "identifier": f"S{n}",
                               "parent": {"sourcedId": "dist-1", "type": "org"}} for n in range(1, self.schools + 1)]

    def students_list(self) -> list[dict]:
        return [student(n, f"sch-{n % self.schools + 1}") for n in range(1, self.students + 1)]


def student(n: int, school: str, sourced_id: str | None = None) -> dict:
    return {"sourcedId": sourced_id or f"stu-{n:05d}", "status": "active", "dateLastModified": "2025-01-01T00:00:00Z",
            "username": f"user{n}", "enabledUser": True, "givenName": f"Given{n}", "familyName": f"Family{n}",
            "identifier": f"ID{n}", "email": f"user{n}@example.org", "grades": ["05"],
            "roles": [{"roleType": "primary", "role": "student", "org": {"sourcedId": school, "type": "org"}}]}


Behaviour = Callable[[Seen, "Handler"], bool]


class Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        seen = Seen(method, parts.path, {k: v[-1] for k, v in parse_qs(parts.query).items()},
                    dict(self.headers.items()), self.rfile.read(length) if length else b"")
        provider = self.server.provider
        with provider.lock:
            provider.requests.append(seen)
        try:
            if provider.behaviour is not None and provider.behaviour(seen, self):
                return
            provider.honest(seen, self)
        except (BrokenPipeError, ConnectionResetError):
            pass

    # ---- ways to answer ----------------------------------------------------------------------------------------
    def send_body(self, status: int, body: bytes, content_type: str = "application/json",
                  headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status: int, payload: object, headers: dict | None = None) -> None:
        self.send_body(status, json.dumps(payload).encode(), headers=headers)

    def redirect(self, status: int, location: str) -> None:
        self.send_body(status, b"", "text/plain", {"Location": location})

    def send_gzip(self, status: int, raw: bytes) -> None:
        self.send_body(status, gzip.compress(raw, 9), headers={"Content-Encoding": "gzip"})

    def send_chunks(self, chunks, headers: dict | None = None) -> None:
        """A chunked body from an iterable of bytes (it may never end)."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        for chunk in chunks:
            if chunk:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def drip(self, raw: bytes, every: float) -> None:
        """Write `raw` (a whole HTTP answer, status line included) one byte at a time."""
        for byte in raw:
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(every)
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    provider: HostileProvider


class HostileProvider:
    def __init__(self, district: District | None = None) -> None:
        self.district = district or District()
        self.behaviour: Behaviour | None = None
        self.requests: list[Seen] = []
        self.tokens: list[str] = []
        self.revision: str | None = None  # sent as x-perm-rev (ClassLink's data revision) when set
        self.students: list[dict] | None = None  # served instead of the district's students when set
        self.lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.provider = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> HostileProvider:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def base_url(self) -> str:
        return self.origin + BASE_PATH

    @property
    def token_url(self) -> str:
        return self.origin + TOKEN_PATH

    def env(self, **extra: str) -> dict[str, str]:
        """ONEROSTER_* variables for this provider (OAuth 2.0), fast retries."""
        return {"ONEROSTER_PROVIDER": "oneroster", "ONEROSTER_BASE_URL": self.base_url, "ONEROSTER_AUTH": "oauth2",
                "ONEROSTER_TOKEN_URL": self.token_url, "ONEROSTER_CLIENT_ID": CLIENT_ID,
                "ONEROSTER_CLIENT_SECRET": CLIENT_SECRET, "ONEROSTER_PAGE_SIZE": "50", "ONEROSTER_MAX_RETRIES": "1",
                "ONEROSTER_BACKOFF_SECONDS": "0", "ONEROSTER_TIMEOUT_SECONDS": "5", **extra}

    def issue_token(self) -> str:
        token = "tok-" + secrets.token_urlsafe(24)
        with self.lock:
            self.tokens.append(token)
        return token

    def api_requests(self) -> list[Seen]:
        return [r for r in self.requests if r.path != TOKEN_PATH]

    # ---- the honest district -----------------------------------------------------------------------------------
    def honest(self, seen: Seen, handler: Handler) -> None:
        if seen.path == TOKEN_PATH:
            handler.send_json(200, {"access_token": self.issue_token(), "token_type": "bearer", "expires_in": 3600})
            return
        auth = seen.headers.get("Authorization", "")
        if auth.removeprefix("Bearer ") not in self.tokens:
            handler.send_json(401, {"imsx_codeMajor": "failure", "imsx_description": "unauthorised"})
            return
        collection = seen.path.removeprefix(BASE_PATH)
        students = self.students if self.students is not None else self.district.students_list()
        records, key = {"/orgs": (self.district.orgs(), "orgs"), "/schools": (self.district.orgs()[1:], "orgs"),
                        "/students": (students, "users")}.get(collection, (None, None))
        if records is None:
            handler.send_json(404, {"imsx_codeMajor": "failure", "imsx_description": "no such endpoint"})
            return
        offset, limit = int(seen.query.get("offset", 0)), int(seen.query.get("limit", 100))
        headers = {"X-Total-Count": str(len(records))}
        if self.revision is not None:
            headers["x-perm-rev"] = self.revision
        handler.send_json(200, {key: records[offset:offset + limit]}, headers)
