"""`DemoProvider`: a real OneRoster 1.1 + 1.2 HTTP server on loopback, serving a synthetic `District`."""

# Stdlib `ThreadingHTTPServer` speaking HTTP/1.1 (keep-alive, Content-Length) in a daemon thread. Each API request
# goes through: latency -> queued fault (`faults.fail_next`) -> periodic 429 / 503 -> base path (404) -> auth (401) ->
# session cookie (401, `session_cookie` quirk) -> 1.2 scope (403) -> route (404) -> query parameters (400) -> JSON
# page with `X-Total-Count` and `Link` headers. The token endpoint (`POST /oauth2/token`, OAuth 2.0 mode only) is
# exempt from latency and faults.
#
# `DemoSettings.persona` / `.quirks` switch on what real providers do differently (personas.py): envelope keys, value
# spellings, hrefs, paging headers, error bodies, ids, cookies, scopes, refused parameters. The default persona `spec`
# is the behaviour described in docs/CONTRACTS.md.

from __future__ import annotations

import dataclasses
import json
import re
import secrets
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from oneroster_pipeline.demo import personas as q
from oneroster_pipeline.demo.auth import CORE_SCOPE, ROSTER_SCOPE, Authenticator
from oneroster_pipeline.demo.district import District, DistrictShape
from oneroster_pipeline.demo.faults import (
    HTML_TYPE,
    JSON_TYPE,
    Faults,
    edfi_error,
    html_error,
    imsx_error,
    status_info_set_error,
)
from oneroster_pipeline.demo.query import (
    ORG_FIELDS,
    USER_FIELDS,
    QueryError,
    parse_fields,
    parse_filter,
    parse_paging,
    parse_sort,
)
from oneroster_pipeline.demo.render import (
    ORG_KEYS,
    USER_KEYS,
    Wire,
    legacy_sourced_id,
    render_org,
    render_user,
    select_fields,
)
from oneroster_pipeline.demo.selection import Selector, Source

BASE_PATHS = {"1.1": "/ims/oneroster/v1p1", "1.2": "/ims/oneroster/rostering/v1p2"}
TOKEN_PATH = "/oauth2/token"
_LOG_ENTRIES = 1_000_000  # the log keeps the most recent requests only (a long-running CLI server)
_ROUTE = re.compile(r"^/(orgs|schools|users|students)(?:/([^/]+)(/students)?)?/?$")
SESSION_COOKIE_NAME = "ARRAffinity"  # what Aeries' load balancer (Azure App Service ARR) sets
_IC_USER_FIELDS = {**USER_FIELDS["1.1"], "sourcedId": legacy_sourced_id}  # IC 1.1: filter/sort on prefixed ids


@dataclass
class DemoSettings:
    """How the demo provider behaves; defaults as in docs/CONTRACTS.md."""

    auth: str = "oauth2"  # none | oauth2 | oauth1 | bearer
    client_id: str = "demo-client"
    client_secret: str = "demo-secret"
    bearer_token: str = "demo-token"
    token_lifetime: int = 3600  # seconds an OAuth 2.0 access token stays valid
    page_cap: int | None = None  # server-side maximum page size (pages silently shorter than `limit`)
    latency_ms: int = 0  # added to every API request
    rate_limit_every: int = 0  # every Nth API request -> 429 with Retry-After
    retry_after: int = 1
    error_5xx_every: int = 0  # every Nth API request -> 503 with an HTML body
    versions: tuple[str, ...] = ("1.1", "1.2")  # which base paths are served
    scopes: tuple[str, ...] = (CORE_SCOPE, ROSTER_SCOPE)  # 1.2 scopes the OAuth 2.0 client may be granted
    boolean_enabled_user: bool = False  # same as the enabled_user_boolean quirk (kept for existing callers)
    persona: str = "spec"  # spec | infinite_campus | classlink | aeries | edfi (personas.PERSONAS)
    quirks: frozenset[str] = frozenset()  # extra quirks on top of the persona's (personas.QUIRKS)
    id_namespace: str = ""  # non-empty: every sourcedId differs (another provider's ids for the same district)

    def __post_init__(self) -> None:
        unknown = set(self.versions) - set(BASE_PATHS)
        if unknown or not self.versions:
            raise ValueError(f"versions must be a non-empty subset of {sorted(BASE_PATHS)}, not {self.versions!r}")
        self.quirks = frozenset([self.quirks] if isinstance(self.quirks, str) else self.quirks)
        if q.SESSION_COOKIE in self.active_quirks and self.auth != "oauth2":
            raise ValueError("the session_cookie quirk needs auth='oauth2' (the cookie comes with the token response)")

    @property
    def active_quirks(self) -> frozenset[str]:
        """Every quirk in force: the persona's, the extra `quirks`, and boolean_enabled_user's (validated)."""
        extra = self.quirks | ({q.ENABLED_USER_BOOLEAN} if self.boolean_enabled_user else set())
        return q.resolve_quirks(self.persona, extra)


@dataclass(frozen=True)
class RequestLogEntry:
    method: str
    path: str
    query: dict[str, str]
    status: int


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)


def _json(status: int, payload: dict, **headers: str) -> Response:
    return Response(status, json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode(), JSON_TYPE,
                    headers)


class DemoProvider:
    """A running demo OneRoster provider; use as a context manager or call start()/stop()."""

    def __init__(self, shape: DistrictShape | None = None, settings: DemoSettings | None = None,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.settings = settings or DemoSettings()
        self.quirks = self.settings.active_quirks
        self._wire = Wire.from_quirks(self.quirks)
        self.district = District(shape or DistrictShape(), id_namespace=self.settings.id_namespace)
        self.faults = Faults()
        scopes = self.settings.scopes
        if q.CORE_SCOPE_ONLY in self.quirks:
            scopes = tuple(s for s in scopes if s != ROSTER_SCOPE)
        self._auth = Authenticator(self.settings.auth, self.settings.client_id, self.settings.client_secret,
                                   self.settings.bearer_token, self.settings.token_lifetime, scopes)
        self._session_cookies: set[str] = set()
        self._selector = Selector(self.district)
        self._host, self._port = host, port
        self._log: deque[RequestLogEntry] = deque(maxlen=_LOG_ENTRIES)
        self._api_requests = 0
        self._counter_lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> DemoProvider:
        server = ThreadingHTTPServer((self._host, self._port), _Handler)
        server.daemon_threads = True
        server.provider = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="oneroster-demo", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = self._thread = None

    def __enter__(self) -> DemoProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- addresses and observation -----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the demo provider is not running")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        host = self._host if self._host not in ("", "0.0.0.0") else "127.0.0.1"
        return f"http://{host}:{self.port}"

    def base_url(self, version: str) -> str:
        return self.url + BASE_PATHS[version]

    @property
    def token_url(self) -> str:
        return self.url + TOKEN_PATH

    @property
    def request_log(self) -> list[RequestLogEntry]:
        """A snapshot of the requests answered so far (token requests included), oldest first."""
        return list(self._log)

    def clear_request_log(self) -> None:
        self._log.clear()

    def expire_tokens(self) -> None:
        """Every OAuth 2.0 token issued so far stops working (the next API request with one gets 401)."""
        self._auth.tokens.expire_all()

    # ---- request handling --------------------------------------------------------------------------------------
    def handle(self, method: str, target: str, headers: dict[str, str], body: str) -> Response:
        """Answer one HTTP request (`target` is the request line's path plus query string)."""
        split = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        try:
            response = self._respond(method, split.path, query, headers, body, target)
        except Exception:  # a bug in the demo must still produce a well-formed answer
            traceback.print_exc()
            response = self._error(500, "internal_server_error", "unexpected error in the demo provider")
        self._log.append(RequestLogEntry(method, split.path, query, response.status))
        return response

    def _respond(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: str,
                 target: str) -> Response:
        if path == TOKEN_PATH and self.settings.auth == "oauth2":
            if method != "POST":
                return _json(405, {"error": "invalid_request"}, Allow="POST")
            status, payload = self._auth.token_response(headers, body)
            extra = {"WWW-Authenticate": 'Basic realm="oneroster-demo"'} if status == 401 else {}
            if status == 200 and q.SESSION_COOKIE in self.quirks:
                cookie = secrets.token_hex(32)
                self._session_cookies.add(cookie)
                extra["Set-Cookie"] = f"{SESSION_COOKIE_NAME}={cookie}; Path=/; HttpOnly"
            return _json(status, payload, **extra, **{"Cache-Control": "no-store"})
        if self.settings.latency_ms:
            time.sleep(self.settings.latency_ms / 1000)
        with self._counter_lock:
            self._api_requests += 1
            n = self._api_requests
        fault = self.faults.take()
        if fault is not None:
            content_type, payload = fault.render(_reason(fault.status))
            extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            return Response(fault.status, payload, content_type, extra)
        if self.settings.rate_limit_every and n % self.settings.rate_limit_every == 0:
            return self._error(429, "server_busy", "rate limit exceeded",
                               **{"Retry-After": str(self.settings.retry_after)})
        if self.settings.error_5xx_every and n % self.settings.error_5xx_every == 0:
            return Response(503, html_error(503, "Service Temporarily Unavailable"), HTML_TYPE)
        version = next((v for v in self.settings.versions if path.startswith(BASE_PATHS[v] + "/")), None)
        if version is None:
            return self._error(404, "unknownobject", f"no OneRoster endpoint at {path}")
        host = headers.get("Host") or f"{self._host}:{self.port}"
        auth = self._auth.check(method, f"http://{host}{target}", headers)
        challenge = {"WWW-Authenticate": f'{_challenge(self.settings.auth)} realm="oneroster-demo"'}
        if not auth.ok:
            return self._error(401, "unauthorisedrequest", auth.reason, **challenge)
        if q.SESSION_COOKIE in self.quirks and not self._has_session_cookie(headers.get("Cookie", "")):
            return self._error(401, "unauthorisedrequest", "no session: send the cookie the token response set",
                               **challenge)
        if method != "GET":
            return self._error(405, "invaliddata", f"{method} is not supported", Allow="GET")
        route = _ROUTE.match(path[len(BASE_PATHS[version]):])
        if route is None or (route.group(3) and route.group(1) != "schools"):
            return self._error(404, "unknownobject", f"no OneRoster endpoint at {path}")
        kind, sourced_id, nested = route.groups()
        needed = {ROSTER_SCOPE} if nested else {CORE_SCOPE, ROSTER_SCOPE}
        if version == "1.2" and not needed & auth.scopes:
            return self._error(403, "forbidden", f"the granted scope does not cover {path}")
        base = self._href_base(version, host)
        try:
            if sourced_id is None or nested:
                return self._collection(version, kind, sourced_id, query, base, f"http://{host}{path}")
            return self._single(version, kind, sourced_id, query, base)
        except QueryError as err:
            return self._error(400, err.code_minor, str(err))

    def _error(self, status: int, code_minor: str, description: str, **headers: str) -> Response:
        """An error response in the body form of the active quirks (1.2 imsx by default)."""
        if status == 401 and q.EMPTY_AUTH_ERROR in self.quirks:
            return Response(status, b"", None, headers)
        if q.EDFI_ERRORS in self.quirks:
            return _json(status, edfi_error(code_minor, description), **headers)
        if q.STATUS_INFO_SET_ERRORS in self.quirks:
            return _json(status, status_info_set_error(code_minor, description), **headers)
        return _json(status, imsx_error(code_minor, description), **headers)

    def _has_session_cookie(self, header: str) -> bool:
        try:
            cookie = SimpleCookie(header).get(SESSION_COOKIE_NAME)
        except CookieError:
            return False
        return cookie is not None and cookie.value in self._session_cookies

    def _href_base(self, version: str, host: str) -> str:
        """What GUID ref hrefs start with: the absolute base URL, or a relative form (quirks)."""
        if q.RELATIVE_HREFS in self.quirks:
            return ""  # /orgs/{id}, relative to the base URL (Ed-Fi)
        if q.APP_RELATIVE_HREFS in self.quirks:
            return "~" + BASE_PATHS[version]  # ~/ims/oneroster/v1p1/orgs/{id} (ASP.NET, Aeries)
        return f"http://{host}{BASE_PATHS[version]}"

    def _check_refused(self, query: dict[str, str]) -> None:
        if "sort" in query and q.REJECT_SORT in self.quirks:
            raise QueryError("sort is not supported by this server", "invalid_sort_field")
        if "fields" in query and q.REJECT_FIELDS in self.quirks:
            raise QueryError("fields is not supported by this server", "invalid_selection_field")
        if "datelastmodified" in query.get("filter", "").lower() and q.REJECT_DATE_FILTER in self.quirks:
            raise QueryError("filtering on dateLastModified is not supported by this server", "invalid_filter_field")

    def _envelope(self, kind: str, nested: bool, single: bool) -> str:
        """The key a response wraps its records in: the spec's, or the endpoint's own name (plural_envelopes)."""
        if q.PLURAL_ENVELOPES in self.quirks and (kind in ("schools", "students") or nested):
            name = "students" if nested else kind
        else:
            name = "orgs" if kind in ("orgs", "schools") and not nested else "users"
        return name[:-1] if single else name

    def _single(self, version: str, kind: str, sourced_id: str, query: dict[str, str], base: str) -> Response:
        self._check_refused(query)
        key = self._envelope(kind, False, single=True)
        if kind in ("orgs", "schools"):
            org = self.district.org(sourced_id)
            if org is None or (kind == "schools" and org["type"] != "school"):
                return self._error(404, "unknownobject", f"no {kind[:-1]} with sourcedId {sourced_id}")
            fields = parse_fields(query.get("fields"), ORG_KEYS)
            return _json(200, {key: select_fields(render_org(org, base, self._wire), fields)})
        user = self._find_user(version, sourced_id)
        if user is None or (kind == "students" and user["role"] != "student"):
            return self._error(404, "unknownobject", f"no {kind[:-1]} with sourcedId {sourced_id}")
        fields = parse_fields(query.get("fields"), USER_KEYS[version])
        rendered = render_user(user, version, base, wire=self._wire)
        return _json(200, {key: select_fields(rendered, fields)})

    def _find_user(self, version: str, sourced_id: str) -> dict | None:
        if version == "1.1" and q.IC_ROLE_PREFIXED_IDS in self.quirks:  # only the role-prefixed id is known
            user = self.district.find_user(sourced_id[1:])
            return user if user is not None and legacy_sourced_id(user) == sourced_id else None
        return self.district.find_user(sourced_id)

    def _collection(self, version: str, kind: str, school_id: str | None, query: dict[str, str], base: str,
                    url: str) -> Response:
        is_org = kind in ("orgs", "schools") and school_id is None
        ic_ids = not is_org and version == "1.1" and q.IC_ROLE_PREFIXED_IDS in self.quirks
        accessors = ORG_FIELDS if is_org else _IC_USER_FIELDS if ic_ids else USER_FIELDS[version]
        self._check_refused(query)
        limit, offset = parse_paging(query.get("limit"), query.get("offset"))
        flt = parse_filter(query["filter"], accessors) if query.get("filter") else None
        sort, descending = parse_sort(query.get("sort"), query.get("orderBy"), accessors)
        fields = parse_fields(query.get("fields"), ORG_KEYS if is_org else USER_KEYS[version])
        if school_id is not None:
            school = self.district.org(school_id)
            if school is None or school["type"] != "school":
                return self._error(404, "unknownobject", f"no school with sourcedId {school_id}")
        source = self._source(kind, school_id)
        if ic_ids:  # the same filter text selects differently here: keep its cached selection apart
            source = dataclasses.replace(source, name=f"{source.name}@ic-1.1")
        selected = self._selector.select(source, flt, query.get("filter"), accessors.get(sort), sort, descending)
        page_size = min(limit, self.settings.page_cap) if self.settings.page_cap else limit
        # a record removed since the selection was computed is skipped, as a live server would
        records = [r for r in map(source.get, selected[offset : offset + page_size]) if r is not None]
        wire = self._wire
        if is_org:
            items = [select_fields(render_org(r, base, wire), fields) for r in records]
        else:
            items = [select_fields(render_user(r, version, base, wire=wire), fields) for r in records]
        headers = {}
        if q.NO_TOTAL_COUNT not in self.quirks:
            headers["X-Total-Count"] = str(len(selected))
        if q.NO_LINK not in self.quirks:
            skip = 1 if q.LINK_OFF_BY_ONE in self.quirks else 0
            headers["Link"] = _links(url, query, limit, offset, page_size, len(selected), skip)
        return _json(200, {self._envelope(kind, school_id is not None, single=False): items}, **headers)

    def _source(self, kind: str, school_id: str | None) -> Source:
        d = self.district
        if kind == "orgs" and school_id is None:
            orgs = d.orgs()
            return Source("orgs", len(orgs), orgs.__getitem__, lambda k: True, small=True)
        if kind == "schools" and school_id is None:
            schools = [o for o in d.orgs() if o["type"] == "school"]
            return Source("schools", len(schools), schools.__getitem__, lambda k: True, small=True)
        if kind == "users":
            return Source("users", d.user_slots, d.user,
                          lambda k: k >= d.student_slots or d.student_orgs(k) is not None, dense=not d.removed_count)
        if school_id is not None:
            return Source(f"school:{school_id}", d.student_slots, d.student,
                          lambda i: school_id in (d.student_orgs(i) or ()), dense=False)
        return Source("students", d.student_slots, d.student, lambda i: d.student_orgs(i) is not None,
                      dense=not d.removed_count)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _challenge(mode: str) -> str:
    return "OAuth" if mode == "oauth1" else "Bearer"


def _links(url: str, query: dict[str, str], limit: int, offset: int, page_size: int, total: int,
           next_skip: int = 0) -> str:
    """RFC 8288 Link header with first/prev/next/last, keeping every other query parameter.

    `next_skip` > 0 reproduces a server whose next offset is that many records too far (link_off_by_one)."""

    def link(new_offset: int, rel: str) -> str:
        params = {**query, "limit": str(limit), "offset": str(new_offset)}
        return f'<{url}?{urlencode(params, quote_via=quote)}>; rel="{rel}"'

    last = max(0, (total - 1) // page_size * page_size)
    links = [link(0, "first")]
    if offset > 0:
        links.append(link(max(0, offset - page_size), "prev"))
    if offset + page_size < total:
        links.append(link(offset + page_size + next_skip, "next"))
    links.append(link(last, "last"))
    return ", ".join(links)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY, as production HTTP servers set it: without it a small answer on a kept-alive connection (the
    # headers and the body are two writes) waits for the client's delayed ACK, ~40 ms per page
    disable_nagle_algorithm = True
    server_version = "OneRosterDemo/1.0"

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        headers = {k.title(): v for k, v in self.headers.items()}
        response = self.server.provider.handle(method, self.path, headers, body)  # type: ignore[attr-defined]
        self.send_response(response.status, _reason(response.status))
        if response.content_type:
            self.send_header("Content-Type", response.content_type)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (quiet: tests read request_log)
        pass
