"""The Dagster instance's SQLite storage (dagster.yaml `storage: custom:`), created once however many runs start.

Dagster's own SQLite storage creates its databases the first time a process opens the instance: two first runs
started at the same moment on a fresh DAGSTER_HOME (cron, two districts) both create the tables and both stamp the
schema version, and every later run fails with "alembic_version has more than one head". This storage is Dagster's,
file for file (history/runs.db, history/runs/index.db, schedules/), but each database is opened for the first time
under an exclusive lock on DAGSTER_HOME/.storage-init.lock, so one process creates it and the others wait, then
find it ready.
"""

from __future__ import annotations

import atexit
import fcntl
import inspect
import os
import shutil
import tempfile
from contextlib import contextmanager
from collections.abc import Iterator

from dagster._config import Field, StringSource
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.base_storage import DagsterStorage
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import SqliteScheduleStorage
from dagster._serdes import ConfigurableClass, ConfigurableClassData

LOCK_FILE = ".storage-init.lock"


@contextmanager
def exclusive(folder: str) -> Iterator[None]:
    """Hold the instance folder's init lock (other processes opening a database meanwhile wait)."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, LOCK_FILE), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class SerializedSqliteStorage(DagsterStorage, ConfigurableClass):
    """Dagster's SQLite run, event log and schedule storage, opened under the lock."""

    def __init__(self, base_dir: str | None = None, inst_data: ConfigurableClassData | None = None) -> None:
        self.base_dir = base_dir or _instance_folder() or os.environ.get("DAGSTER_HOME") or _private_folder()
        self._inst_data = inst_data
        with exclusive(self.base_dir):
            self._run = SqliteRunStorage.from_local(os.path.join(self.base_dir, "history", ""))
            self._events = SqliteEventLogStorage(os.path.join(self.base_dir, "history", "runs", ""))
            self._schedules = SqliteScheduleStorage.from_local(os.path.join(self.base_dir, "schedules"))
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls):
        return {"base_dir": Field(StringSource, is_required=False, description="default: DAGSTER_HOME")}

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> SerializedSqliteStorage:
        return cls(config_value.get("base_dir"), inst_data=inst_data)

    def register_instance(self, instance) -> None:
        super().register_instance(instance)
        for storage in (self._run, self._events, self._schedules):
            if not storage.has_instance:
                storage.register_instance(instance)

    @property
    def run_storage(self) -> SqliteRunStorage:
        return self._run

    @property
    def event_log_storage(self) -> SqliteEventLogStorage:
        return self._events

    @property
    def schedule_storage(self) -> SqliteScheduleStorage:
        return self._schedules


def _instance_folder() -> str | None:
    """The folder of the instance this storage is being made for: its InstanceRef's local artifact storage (the
    instance's root: DAGSTER_HOME, the folder given to DagsterInstance.from_config, or the temporary folder of a
    command run without DAGSTER_HOME, whose subprocesses get the same ref). Dagster hands a storage only its own
    config, so the ref is read from the caller that is rehydrating it."""
    frame = inspect.currentframe()
    while frame is not None:
        for value in frame.f_locals.values():
            if isinstance(value, InstanceRef):
                base = value.local_artifact_storage_data.config_dict.get("base_dir")
                return base if isinstance(base, str) and base else None
        frame = frame.f_back
    return None


def _private_folder() -> str:
    """Without DAGSTER_HOME, `dagster job execute` keeps its run in a temporary folder it deletes on exit: so does
    this storage, in a folder of its own (no other process shares it)."""
    folder = tempfile.mkdtemp(prefix=".tmp_dagster_home_storage_", dir=os.getcwd())
    atexit.register(shutil.rmtree, folder, True)
    return folder
