"""Error payloads and injected faults of the demo provider."""

# `imsx_error` builds the OneRoster 1.2 status-info payload (codeMinor values from the spec's vocabulary, e.g.
# `unknownobject`, `invalid_filter_field`, `unauthorisedrequest`, `forbidden`, `server_busy`); `edfi_error` and
# `status_info_set_error` are the variants some servers send instead (personas.py). `Faults` queues one-off failures
# (`fail_next`) for the next API requests, in the shapes real providers and gateways produce.

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass

FAULT_BODIES = ("html", "imsx", "malformed_json", "no_envelope", "empty")
CODE_MINOR_BY_STATUS = {400: "invaliddata", 401: "unauthorisedrequest", 403: "forbidden", 404: "unknownobject",
                        429: "server_busy", 503: "server_busy"}
JSON_TYPE = "application/json; charset=utf-8"
HTML_TYPE = "text/html; charset=utf-8"


def imsx_error(code_minor: str, description: str) -> dict:
    return {"imsx_codeMajor": "failure", "imsx_severity": "error", "imsx_description": description,
            "imsx_CodeMinor": {"imsx_codeMinorField": [
                {"imsx_codeMinorFieldName": "TargetEndSystem", "imsx_codeMinorFieldValue": code_minor}]}}


def edfi_error(code_minor: str, description: str) -> dict:
    """Ed-Fi's OneRoster API: the imsx fields with `imsx_codeMinor` as a flat string."""
    return {"imsx_codeMajor": "failure", "imsx_severity": "error", "imsx_description": description,
            "imsx_codeMinor": code_minor}


def status_info_set_error(code_minor: str, description: str) -> dict:
    """Microsoft's OneRoster 1.1 sample server: an array of status infos (flat codeMinor) under `statusInfoSet`."""
    return {"statusInfoSet": [{"imsx_codeMajor": "failure", "imsx_severity": "error",
                               "imsx_description": description, "imsx_codeMinor": code_minor}]}


def html_error(status: int, reason: str) -> bytes:
    """The kind of page a gateway (nginx, a load balancer) sends instead of JSON."""
    return (f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n<center><h1>{status} {reason}"
            f"</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n").encode()


@dataclass(frozen=True)
class Fault:
    status: int
    body: str
    retry_after: int | None

    def render(self, reason: str) -> tuple[str | None, bytes]:
        """(content type, body bytes) of this fault's response."""
        if self.body == "html":
            return HTML_TYPE, html_error(self.status, reason)
        if self.body == "imsx":
            code_minor = CODE_MINOR_BY_STATUS.get(self.status, "internal_server_error")
            return JSON_TYPE, json.dumps(imsx_error(code_minor, f"injected fault: {reason}")).encode()
        if self.body == "malformed_json":
            return JSON_TYPE, b'{"users": [{"sourcedId": "'
        if self.body == "no_envelope":
            return JSON_TYPE, b'{"data": [], "message": "ok"}'
        return None, b""


class Faults:
    """A thread-safe queue of one-off faults for the next API (non-token) requests."""

    def __init__(self) -> None:
        self._queue: deque[Fault] = deque()
        self._lock = threading.Lock()

    def fail_next(self, n: int = 1, status: int = 503, body: str = "html", retry_after: int | None = None) -> None:
        """The next `n` API requests are answered with `status` and a body of kind `body` (see FAULT_BODIES)."""
        if body not in FAULT_BODIES:
            raise ValueError(f"body must be one of {FAULT_BODIES}, not {body!r}")
        with self._lock:
            self._queue.extend([Fault(status, body, retry_after)] * n)

    def take(self) -> Fault | None:
        with self._lock:
            return self._queue.popleft() if self._queue else None

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
