"""The client's front door: the `Source` every provider connection offers, and `open_source(settings)` to get one.

`RestSource` (rest.py) serves every REST provider, `CsvSource` (csv/) a CSV export; both yield the same normalised
Arrow batches (schemas.py) and report each pull in a `PullReport` (paging.py) with its `Rejection`s (normalize.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Protocol, runtime_checkable

import pyarrow as pa

from .csv import CsvSource
from .normalize import Rejection
from .paging import PullReport, delta_filter
from .rest import RestSource
from .settings import ConnectionSettings

__all__ = ["CsvSource", "PullReport", "Rejection", "RestSource", "Source", "delta_filter", "open_source"]


@runtime_checkable
class Source(Protocol):
    """What every source offers. After each pull, `reports[collection]` ("orgs", "students") says what was read and
    whether it was complete, and `rejections` lists the records of the latest pull that could not be normalised."""

    settings: ConnectionSettings
    reports: dict[str, PullReport]
    rejections: list[Rejection]

    def org_batches(self) -> Iterator[pa.Table]:
        """Every org, as ORG_SCHEMA tables."""
        ...

    def student_batches(self, modified_since: datetime | None = None) -> Iterator[pa.Table]:
        """Every student (with `modified_since`: those modified after it), as USER_SCHEMA tables."""
        ...

    def fetch_school_count(self) -> int:
        """How many schools the provider shares."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Source: ...

    def __exit__(self, *exc: object) -> None: ...


def open_source(settings: ConnectionSettings) -> Source:
    """The source for the settings: `CsvSource` for provider csv, else `RestSource`. Use as a context manager."""
    if settings.provider == "csv":
        return CsvSource(settings)
    return RestSource(settings)
