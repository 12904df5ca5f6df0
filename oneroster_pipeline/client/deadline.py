"""A whole-request deadline: every HTTP request attempt must be answered, headers and body, within
`ONEROSTER_REQUEST_DEADLINE_SECONDS`, however slowly the server drips its bytes.

urllib3's read timeout bounds each socket read only: a server sending one byte every few seconds never trips it.
Here every connection a request uses registers itself with the calling thread's `Deadline` when it sends; one
watchdog thread shuts the socket of every connection whose deadline has passed, so the blocked read returns at
once and the request fails (`Deadline.expired` tells the caller why).
"""

from __future__ import annotations

import heapq
import itertools
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_local = threading.local()


class Deadline:
    """The deadline of one request (all its attempts): `seconds` from each attempt's start."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self.expires_at = float("inf")
        self._connections: list = []

    def attempt(self, connection) -> None:
        """A new attempt on `connection` starts now (a retry re-arms the deadline)."""
        self.expires_at = time.monotonic() + self.seconds
        connection._oneroster_deadline = self
        self._connections = [connection]
        _WATCHDOG.watch(self)

    def expire(self) -> None:
        """Called by the watchdog: shut this request's sockets so a blocked read returns."""
        self.expired = True
        for connection in self._connections:
            if getattr(connection, "_oneroster_deadline", None) is not self:
                continue  # back in the pool and taken by another request since
            sock = getattr(connection, "sock", None)
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def done(self) -> None:
        self.expires_at = float("inf")
        for connection in self._connections:
            if getattr(connection, "_oneroster_deadline", None) is self:
                connection._oneroster_deadline = None
        self._connections = []


@contextmanager
def request_deadline(seconds: float) -> Iterator[Deadline]:
    """Requests of this thread inside the block are bounded by `seconds` per attempt."""
    outer = getattr(_local, "deadline", None)
    deadline = _local.deadline = Deadline(seconds)
    try:
        yield deadline
    finally:
        deadline.done()
        _local.deadline = outer


def current() -> Deadline | None:
    return getattr(_local, "deadline", None)


class _Watchdog:
    """One daemon thread that expires deadlines at their time (a heap of (time, n, deadline))."""

    def __init__(self) -> None:
        self._heap: list = []
        self._counter = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, deadline: Deadline) -> None:
        with self._wake:
            heapq.heappush(self._heap, (deadline.expires_at, next(self._counter), deadline))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="oneroster-request-deadline", daemon=True)
                self._thread.start()
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._heap and self._heap[0][2].expires_at != self._heap[0][0]:
                    heapq.heappop(self._heap)  # re-armed or done since: its current entry is elsewhere
                delay = self._heap[0][0] - time.monotonic() if self._heap else None
                if delay is None or delay > 0:
                    self._wake.wait(delay)
                    continue
                _, _, deadline = heapq.heappop(self._heap)
            deadline.expire()


_WATCHDOG = _Watchdog()


class _Watched:
    def request(self, *args, **kwargs):  # every attempt, a reused keep-alive connection included
        deadline = current()
        if deadline is not None:
            deadline.attempt(self)
        return super().request(*args, **kwargs)


class WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class WatchedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = WatchedHTTPConnection


class WatchedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = WatchedHTTPSConnection


POOL_CLASSES = {"http": WatchedHTTPConnectionPool, "https": WatchedHTTPSConnectionPool}
