"""One DuckDB instance per process; each database file is ATTACHed to it while connections use it. Framework-free.

Why: `duckdb.connect(path)` builds a whole database instance every time (its catalog of built-in functions, its
thread pool), 20-25 ms on this project's machines however small the file, and closing it checkpoints the file. A
batched run over many districts opened each district's file sixteen times (seven since the checks share two steps),
so instance start-ups were the largest per-district cost (`benchmarks/many_districts_benchmark.py`). Attaching a file
to one long-lived in-memory instance costs about 2 ms. A file stays attached while any connection of this process
uses it and is detached when the last one closes: DETACH checkpoints it and releases its lock, as closing the last
connection did, so other processes see the file exactly as before (the lock wait and its errors are the caller's).

A connection's `prepare` (the store's schema check) runs once per attachment, and not at all when the file is
exactly as this process left it when it last detached it (the file and its write-ahead log: same inode, size and
modification time, so nobody wrote it since and its tables are the ones this process saw).

Writing can fail for want of space (or another IO error): `write_failure` turns DuckDB's and the OS's texts into a
`WarehouseWriteError` that says the disk is full and names the file. What is durable decides what such a failure
means. A COMMIT that succeeded is in the file's write-ahead log, which DuckDB replays the next time the file is
opened; so a DETACH whose checkpoint fails after the connections committed loses nothing: it is logged as a
warning (naming the file, the log and the full disk) and never raised. A failure before or at COMMIT rolls back.

The shared instance spills to `.duckdb-spill-<pid>` beside the first file it attached (DuckDB creates the folder
when it first spills and removes it when the instance closes, at exit), one folder per process so that concurrent
runs never share spill files.
"""

from __future__ import annotations

import atexit
import errno
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import duckdb

from oneroster_pipeline.client.redaction import one_line

from .sql_text import sql_string

T = TypeVar("T")
log = logging.getLogger(__name__)


PATH_VAR = "ONEROSTER_DUCKDB_PATH"
LOCK_RETRY_SECONDS = 0.25
# a file attached by another instance of this process: DuckDB 2 raises ResourceInUseException, 1.5 a BinderException
# (both say "file handle conflict", which `attached` checks)
_IN_USE = getattr(duckdb, "ResourceInUseException", duckdb.BinderException)


class DuckDBPathError(RuntimeError):
    """The DuckDB file cannot be opened for writing (ONEROSTER_DUCKDB_PATH): unwritable, not a file, or locked."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        super().__init__(f"{PATH_VAR}={path}: {problem}")


class WarehouseWriteError(OSError):
    """Writing the DuckDB file, its write-ahead log, or a staging or spill file beside it failed (the disk is full,
    or another IO error) before the transaction being written committed: it was rolled back. The message says
    whether the disk is full and names the file that could not be written (and, after `ONEROSTER_DUCKDB_PATH=`, the
    DuckDB file, unless a staging file failed: then nothing was written to it). An OSError, as the failure it
    explains (ENOSPC when the disk is full)."""

    def __init__(self, path: str | None, file: str, disk_full: bool, detail: str) -> None:
        self.path, self.file, self.disk_full = path, file, disk_full
        problem = "the disk is full (no space left on device)" if disk_full else "an IO error"
        done = ("the transaction being written was rolled back, so the tables are as they were before it" if path
                else "nothing was written to the DuckDB file")
        fix = f"free space on the volume of {Path(file).parent}" if disk_full else "check that volume"
        super().__init__(f"{f'{PATH_VAR}={path}: ' if path else ''}{problem} writing {file}: {done}. "
                         f"{fix[0].upper()}{fix[1:]} and run again. ({detail})")
        self.errno = errno.ENOSPC if disk_full else None


_DISK_FULL = ("no space left on device", "disk quota exceeded", "file too large")
_WRITE_FAILED = ("could not write", "could not fsync", "could not truncate", "checkpoint failed",
                 "has been invalidated", "input/output error", "read-only file system")


def write_failure(error: BaseException, path: str | Path | None, file: str | Path | None = None
                  ) -> WarehouseWriteError | None:
    """`error` as a WarehouseWriteError when it is a failure to write (a DuckDB error, or an OSError writing `file`)
    for the DuckDB file at `path` (None: a file beside it, e.g. staging); None for any other error. DuckDB's text
    names the file it could not write."""
    text = str(error)
    lowered = text.lower()
    disk_full = any(phrase in lowered for phrase in _DISK_FULL) or (
        isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT))
    if not disk_full and not (isinstance(error, OSError) or any(phrase in lowered for phrase in _WRITE_FAILED)):
        return None
    named = re.search(r'(?:write|fsync|truncate) file "([^"]+)"', text)
    written = named.group(1) if named else str(file or path)
    detail = one_line(text)
    detail = detail if len(detail) < 400 else detail[:400] + "..."
    return WarehouseWriteError(str(path) if path else None, written, disk_full, detail)


def raise_if_disk_full(error: OSError, file: Path) -> None:
    """Raise `error`, an OSError writing `file` beside the DuckDB file (staging), as a WarehouseWriteError when the
    disk is full (its message quotes the error: a run's record shows an error's innermost cause)."""
    failure = write_failure(error, None, file)
    if failure is not None and failure.disk_full:
        raise failure from None


class HeldByAnotherInstance(Exception):
    """The file is already open in this process through its own `duckdb.connect` instance (a notebook, a test, a
    plain `DuckDBResource` connection): the caller opens it the same way, sharing that instance."""


class _Shared:
    def __init__(self, first_file: str) -> None:
        self.pid = os.getpid()
        spill = Path(first_file).parent / f".duckdb-spill-{self.pid}"
        self.root = duckdb.connect(":memory:", config={"temp_directory": str(spill)})
        self.files: dict[str, _Attachment] = {}  # absolute path -> its attachment while connections use it
        self.attached_count = 0
        self.left: dict[str, tuple] = {}  # absolute path -> the file's signature when this process detached it


class _Attachment:
    def __init__(self, alias: str, prepared: bool) -> None:
        self.alias, self.users, self.prepared = alias, 0, prepared


def _signature(path: str) -> tuple:
    """What changes whenever anyone writes or replaces the file: its and its write-ahead log's identity, size and
    modification time (a writer that died before checkpointing left its changes in the log only)."""
    def stat(name: str) -> tuple | None:
        try:
            found = os.stat(name)
        except OSError:
            return None
        return found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns
    return stat(path), stat(path + ".wal")


_lock = threading.Lock()
_shared: _Shared | None = None


def _instance(first_file: str) -> _Shared:
    global _shared
    if _shared is None or _shared.pid != os.getpid():  # a forked child builds its own
        _shared = _Shared(first_file)
    return _shared


@atexit.register
def _close() -> None:
    if _shared is not None and _shared.pid == os.getpid():
        _shared.root.close()


def opened(path: str | Path, wait: float, attempt: Callable[[str], T]) -> T:
    """`attempt(path)` (open or attach the file), retried for `wait` seconds while another process holds its lock;
    a path that cannot be written (permission denied, a directory, a parent that is a file, not a DuckDB file) fails
    at once. Both as `DuckDBPathError`, whose message starts `ONEROSTER_DUCKDB_PATH=<path>:`. The one way every part
    of the pipeline opens the file."""
    shown = str(path)
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DuckDBPathError(shown, f"cannot create the folder {Path(path).parent}: "
                                     f"{_os_reason(error)}") from None
    deadline = time.monotonic() + wait
    while True:
        try:
            return attempt(shown)
        except duckdb.IOException as error:
            text = str(error)
            if "could not set lock" not in text.lower():
                raise DuckDBPathError(shown, f"cannot open the DuckDB file for writing: {_duckdb_reason(text)}") \
                    from None
            if time.monotonic() >= deadline:
                pid = re.search(r"\(PID (\d+)\)", text)
                holder = f" (pid {pid.group(1)})" if pid else ""
                raise DuckDBPathError(shown, f"the DuckDB file is locked by another process{holder}, still after "
                                             f"{wait:g}s: another run, a notebook or the DuckDB CLI has it open for "
                                             "writing; close it or wait for it to finish, then run again") from None
            time.sleep(min(LOCK_RETRY_SECONDS, max(deadline - time.monotonic(), 0.01)))


def _duckdb_reason(text: str) -> str:
    """What DuckDB's IO error says went wrong, without its prefix and the path it quotes."""
    text = text.splitlines()[0].removeprefix("IO Error: ").strip()
    if "not a valid DuckDB database file" in text:
        return "the file exists but is not a DuckDB database file"
    reason = text.rsplit('": ', 1)[-1].strip() if '": ' in text else text
    if any(phrase in text.lower() for phrase in _DISK_FULL):
        return f"the disk is full ({reason})"
    hints = {"is a directory": "the path is a directory; name a file in it, e.g. <folder>/oneroster.duckdb",
             "not a directory": "a parent of the path is a file, not a folder",
             "permission denied": "permission denied (check the owner and mode of the file and its folder)",
             "read-only file system": "read-only file system"}
    return hints.get(reason.lower(), reason[:1].lower() + reason[1:])


def _os_reason(error: OSError) -> str:
    if isinstance(error, (FileExistsError, NotADirectoryError)):
        return "a parent of the path is a file, not a folder"
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk is full ({(error.strerror or str(error)).lower()})"
    return (error.strerror or str(error)).lower()


@contextmanager
def attached(path: str | Path, wait: float, prepare: Callable[[duckdb.DuckDBPyConnection], None] | None = None
             ) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection (a cursor of the shared instance) whose default database is the file at `path`, attached for
    as long as any such connection of this process is open. Attaching waits `wait` seconds for another process's
    lock and fails as `opened` does. Raises HeldByAnotherInstance if this process has the file open otherwise.
    `prepare(con)` runs before the first connection of an attachment is handed out, unless the file is as this
    process left it."""
    key = os.path.abspath(path)
    with _lock:
        shared = _instance(key)
        entry = shared.files.get(key)
        if entry is None:
            alias = f"oneroster_file_{shared.attached_count}"
            left = shared.left.pop(key, None)
            try:
                opened(path, wait, lambda shown: shared.root.execute(f"ATTACH {sql_string(key)} AS {alias}"))
            except _IN_USE as error:
                if "file handle conflict" not in str(error).lower():
                    raise
                raise HeldByAnotherInstance(key) from None
            shared.attached_count += 1
            entry = shared.files[key] = _Attachment(alias, left is not None and left == _signature(key))
        entry.users += 1
        con = shared.root.cursor()
    try:
        con.execute(f"USE {entry.alias}")
        if prepare is not None and not entry.prepared:
            prepare(con)
            entry.prepared = True
        yield con
    finally:
        con.close()
        with _lock:
            entry.users -= 1
            if entry.users == 0:
                _detach(shared, key, entry)


def _detach(shared: _Shared, key: str, entry: _Attachment) -> None:
    """DETACH the file: it checkpoints, so its committed changes move from the write-ahead log into the file. A
    failure is logged, never raised: whatever was committed is in the log and is replayed the next time the file is
    opened (and an error on its way out of the connection is the one to tell). DuckDB detaches the file even when
    its checkpoint fails; if it did not, the file stays attached, for reuse."""
    try:
        shared.root.execute(f"DETACH {entry.alias}")
    except duckdb.Error as error:
        if entry.alias in {row[0] for row in shared.root.execute(
                "SELECT database_name FROM duckdb_databases()").fetchall()}:
            log.warning("could not detach %s (it stays attached): %s", key, one_line(error))
            return
        del shared.files[key]
        full = (failure := write_failure(error, key)) is not None and failure.disk_full
        reason, fix = (("the disk is full (no space left on device)", "free space on") if full
                       else ("an IO error", "check"))
        log.warning(f"{PATH_VAR}={key}: could not checkpoint the DuckDB file: {reason}. Nothing is lost: what was "
                    f"committed is in its write-ahead log {key}.wal, which DuckDB replays the next time the file is "
                    f"opened; {fix} the volume of {Path(key).parent}. ({one_line(error)})")
        return
    del shared.files[key]
    if entry.prepared:
        shared.left[key] = _signature(key)


def cursor(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """A new connection to the same database as `con` with its own transaction (`con.cursor()` alone would start
    in the shared instance's in-memory default database)."""
    database = con.execute("SELECT current_database()").fetchall()[0][0]
    other = con.cursor()
    other.execute(f'USE "{database}"')
    return other
