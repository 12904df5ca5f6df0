"""A fast reference OneRoster 1.1 provider for benchmarks: every record rendered to JSON bytes up front, pages
served from memory.

    .venv/bin/python benchmarks/static_provider.py --students 300000 [--schools 40] [--latency-ms 100] [--port 0]

Why: the demo provider (`oneroster-demo-server`) builds and serialises every record per request in Python, on the
same CPUs as the sync, so its pages cost about as much as the sync's own work and hide where the sync spends its
time. This server does that work once at start-up: it renders the demo district (`District`, same seed, same
records as the demo provider's spec persona) with the demo's own `render_user` / `render_org`, keeps each
collection as one bytes blob of comma-joined records plus record offsets, and answers a page with
`prefix + blob[start:end] + suffix` (one slice copy; no JSON work per request). The HTTP server is a stdlib
`ThreadingHTTPServer` (one thread per connection, keep-alive, HTTP/1.1), so concurrent clients are served in
parallel as far as socket writes go.

What it serves (OneRoster 1.1, base path `/ims/oneroster/v1p1`; the spec persona's wire format):
- `POST /oauth2/token`: client-credentials grant (HTTP Basic or form credentials; default demo-client /
  demo-secret), answers a bearer token; every API request must carry one (`--auth none` turns that off).
- `GET /orgs`, `/schools`, `/students` with `limit` (default 100) and `offset`; `X-Total-Count` and an RFC 8288
  `Link` header (first, prev, next, last) as the demo provider sends them.
- `fields`: accepted, not applied: records hold the field selection the sync asks for (`client.source.
  USER_FIELDS["1.1"]` / `ORG_FIELDS`) unless `--full-records` (whole records, ignoring `fields`).
- `sort=sourcedId` (and `orderBy=asc`): accepted; records are stored in sourcedId order (a stable order, as the
  sync's completeness check needs). Any other sort field, or `orderBy=desc`: 400 (imsx `invalid_sort_field`).
- `filter`: 400 (imsx `invalid_filter_field`): this server does not filter. The sync then falls back to a full
  pull, which is what a fresh benchmark database does anyway.
- `--latency-ms`: a sleep before every API answer (not the token endpoint), in the request's own thread.

It prints `base URL: ...`, `token URL: ...` and `ready` lines once it listens (the benchmark reads them).

Many districts on one host (`--districts FILE`, a JSON list of `{"id", "students", "schools", "seed"}`): each
district is served under its own prefix, `/<id>/ims/oneroster/v1p1/...`, from the same process and port, with one
token endpoint and one set of credentials for the host (as one vendor's server hosting many districts). It then
prints `district <id>: <base URL>` per district before `ready` (`--students` is ignored).
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from oneroster_pipeline.client.rest import ORG_FIELDS, USER_FIELDS  # noqa: E402
from oneroster_pipeline.demo.district import District, DistrictShape  # noqa: E402
from oneroster_pipeline.demo.render import render_org, render_user, select_fields  # noqa: E402

BASE_PATH = "/ims/oneroster/v1p1"
TOKEN_PATH = "/oauth2/token"
JSON_TYPE = "application/json"


class Collection:
    """Records of one endpoint as one bytes blob (records joined by commas) and each record's [start, end)."""

    def __init__(self, envelope: str, records: list[bytes]) -> None:
        self.prefix = b'{"' + envelope.encode() + b'":['
        self.blob = b",".join(records)
        self.starts, position = [], 0
        for record in records:
            self.starts.append(position)
            position += len(record) + 1
        self.ends = [s + len(r) for s, r in zip(self.starts, records)]
        self.total = len(records)

    def page(self, offset: int, limit: int) -> bytes:
        if offset >= self.total:
            return self.prefix + b"]}"
        last = min(offset + limit, self.total) - 1
        return self.prefix + self.blob[self.starts[offset]:self.ends[last]] + b"]}"


def _dumps(obj: dict) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def build_collections(students: int, schools: int, seed: int, host_base: str, full_records: bool) \
        -> dict[str, Collection]:
    """/orgs, /schools and /students of the demo district, rendered (OneRoster 1.1) and sorted by sourcedId."""
    district = District(DistrictShape(schools=schools, students=students, seed=seed))
    org_fields = None if full_records else tuple(ORG_FIELDS.split(","))
    user_fields = None if full_records else tuple(USER_FIELDS["1.1"].split(","))
    orgs = sorted(district.orgs(), key=lambda o: o["sourcedId"])
    rendered_orgs = [(o["type"], _dumps(select_fields(render_org(o, host_base), org_fields))) for o in orgs]
    users = []
    for i in range(district.student_slots):
        user = district.student(i)
        if user is not None:
            users.append((user["sourcedId"], _dumps(select_fields(render_user(user, "1.1", host_base), user_fields))))
    users.sort(key=lambda pair: pair[0])
    return {"orgs": Collection("orgs", [r for _, r in rendered_orgs]),
            "schools": Collection("orgs", [r for t, r in rendered_orgs if t == "school"]),
            "students": Collection("users", [r for _, r in users])}


def _imsx(code_minor: str, description: str) -> bytes:
    return _dumps({"imsx_codeMajor": "failure", "imsx_severity": "error", "imsx_description": description,
                   "imsx_CodeMinor": {"imsx_codeMinorField": [{"imsx_codeMinorFieldName": "TargetEndSystem",
                                                               "imsx_codeMinorFieldValue": code_minor}]}})


def _links(url: str, query: dict[str, str], limit: int, offset: int, total: int) -> str:
    """first/prev/next/last, keeping the other query parameters (as the demo provider's `_links`)."""

    def link(new_offset: int, rel: str) -> str:
        return f'<{url}?{urlencode({**query, "limit": str(limit), "offset": str(new_offset)}, quote_via=quote)}>; ' \
               f'rel="{rel}"'

    links = [link(0, "first")]
    if offset > 0:
        links.append(link(max(0, offset - limit), "prev"))
    if offset + limit < total:
        links.append(link(offset + limit, "next"))
    links.append(link(max(0, (total - 1) // limit * limit), "last"))
    return ", ".join(links)


def district_base(district_id: str) -> str:
    """The base path of one district of a many-district host."""
    return f"/{district_id}{BASE_PATH}"


class StaticProvider:
    def __init__(self, collections: dict[str, Collection], host: str, port: int, auth: str, client_id: str,
                 client_secret: str, latency_ms: int) -> None:
        self.collections, self.auth, self.latency = collections, auth, latency_ms / 1000
        self.districts: dict[str, dict[str, Collection]] = {}  # base path -> collections (many-district mode)
        self._client = (client_id, client_secret)
        self._tokens: set[str] = set()
        self.server = ThreadingHTTPServer((host, port), _Handler)
        self.server.daemon_threads = True
        self.server.provider = self  # type: ignore[attr-defined]
        self.origin = f"http://{host}:{self.server.server_address[1]}"

    def token(self, headers, body: str) -> tuple[int, bytes]:
        form = {k: v[-1] for k, v in parse_qs(body).items()}
        if form.get("grant_type") != "client_credentials":
            return 400, _dumps({"error": "unsupported_grant_type"})
        client = (form.get("client_id"), form.get("client_secret"))
        scheme, _, encoded = (headers.get("Authorization") or "").partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(encoded.strip()).decode().partition(":")
                client = (user, password)
            except ValueError:
                pass
        if client != self._client:
            return 401, _dumps({"error": "invalid_client"})
        token = secrets.token_urlsafe(24)
        self._tokens.add(token)
        return 200, _dumps({"access_token": token, "token_type": "bearer", "expires_in": 3600})

    def api(self, path: str, query: dict[str, str], headers) -> tuple[int, bytes, dict[str, str]]:
        if self.latency:
            time.sleep(self.latency)
        if self.auth == "oauth2":
            scheme, _, token = (headers.get("Authorization") or "").partition(" ")
            if scheme.lower() != "bearer" or token.strip() not in self._tokens:
                return 401, _imsx("unauthorisedrequest", "missing or unknown bearer token"), \
                    {"WWW-Authenticate": "Bearer"}
        base, _, name = path.rstrip("/").rpartition("/")
        collections = self.collections if base == BASE_PATH else self.districts.get(base)
        if collections is None:
            return 404, _imsx("unknownobject", f"no such path {path}"), {}
        collection = collections.get(name)
        if collection is None:
            return 404, _imsx("unknownobject", f"no such collection {path} (this server: orgs, schools, students)"), {}
        if query.get("filter"):
            return 400, _imsx("invalid_filter_field", "this benchmark server does not filter"), {}
        if query.get("sort", "sourcedId") != "sourcedId" or query.get("orderBy", "asc") != "asc":
            return 400, _imsx("invalid_sort_field", "this benchmark server sorts by sourcedId ascending only"), {}
        try:
            limit, offset = int(query.get("limit", 100)), int(query.get("offset", 0))
        except ValueError:
            return 400, _imsx("invalid_selection_field", "limit and offset must be integers"), {}
        if limit < 1 or offset < 0:
            return 400, _imsx("invalid_selection_field", "limit must be >= 1 and offset >= 0"), {}
        links = _links(self.origin + path, query, limit, offset, collection.total)
        return 200, collection.page(offset, limit), {"X-Total-Count": str(collection.total), "Link": links}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY, as production HTTP servers set it: without it a small answer on a kept-alive connection (the
    # headers and the body are two writes) waits for the client's delayed ACK, ~40 ms per page
    disable_nagle_algorithm = True
    server_version = "OneRosterStatic/1.0"

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        if urlsplit(self.path).path != TOKEN_PATH:
            return self._send(405, _imsx("unsupported", "POST only on the token endpoint"), {})
        status, payload = self.server.provider.token(self.headers, body)  # type: ignore[attr-defined]
        self._send(status, payload, {"Cache-Control": "no-store"})

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        status, body, headers = self.server.provider.api(parts.path, query, self.headers)  # type: ignore
        self._send(status, body, headers)

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", JSON_TYPE)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def serve_districts(provider: StaticProvider, districts: list[dict], full_records: bool) -> None:
    """Render each district and serve it under its own prefix; prints each district's base URL."""
    for spec in districts:
        base = district_base(spec["id"])
        provider.districts[base] = build_collections(spec["students"], spec.get("schools", 40),
                                                     spec.get("seed", 42), provider.origin + base, full_records)
        print(f"district {spec['id']}: {provider.origin}{base}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--students", type=int, default=300_000)
    p.add_argument("--schools", type=int, default=40)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--auth", choices=("oauth2", "none"), default="oauth2")
    p.add_argument("--client-id", default="demo-client")
    p.add_argument("--client-secret", default="demo-secret")
    p.add_argument("--latency-ms", type=int, default=0, help="added to every API request")
    p.add_argument("--full-records", action="store_true",
                   help="serve whole records (userIds, sms, phone, agents ...), not the sync's field selection")
    p.add_argument("--districts", type=Path, metavar="JSON",
                   help='many districts on this host: a JSON list of {"id", "students", "schools", "seed"}, each '
                        "served under /<id>/ims/oneroster/v1p1")
    args = p.parse_args(argv)
    # bind first: the records' hrefs need the port
    provider = StaticProvider({}, args.host, args.port, args.auth, args.client_id, args.client_secret,
                              args.latency_ms)
    started = time.perf_counter()
    if args.districts:
        serve_districts(provider, json.loads(args.districts.read_text()), args.full_records)
    else:
        provider.collections = build_collections(args.students, args.schools, args.seed,
                                                 provider.origin + BASE_PATH, args.full_records)
    everything = [provider.collections] if provider.collections else list(provider.districts.values())
    students = sum(c["students"].total for c in everything)
    size = sum(len(c["students"].blob) for c in everything)
    print(f"rendered {students} students ({size / 2**20:.0f} MiB of JSON) and "
          f"{sum(c['orgs'].total for c in everything)} orgs in {time.perf_counter() - started:.1f} s", flush=True)
    if provider.collections:
        print(f"base URL: {provider.origin}{BASE_PATH}")
    print(f"token URL: {provider.origin}{TOKEN_PATH}")
    print("ready", flush=True)
    thread = threading.Thread(target=provider.server.serve_forever, daemon=True)
    thread.start()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        provider.server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
