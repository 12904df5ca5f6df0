"""The demo district's deterministic building blocks: its shape, student categories, hashing and timestamps."""

# Pure functions of the seed (no state): `district.py` builds the records and the mutable overlay on them.

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

GRADES = ("KG", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12")
LEVELS = (("Elementary School", GRADES[0:6]), ("Middle School", GRADES[6:9]), ("High School", GRADES[9:13]))
BASE_DATE_MS = 1_751_328_000_000  # 2025-07-01T00:00:00Z: every base record was modified in the 90 days after it
SPREAD_MS = 90 * 24 * 3600 * 1000
NAMESPACE = uuid.UUID("6f0c5a8e-3c1b-5d2e-9a47-0e5b7d1c2f30")
MASK64 = (1 << 64) - 1

REGULAR, TWO_SCHOOLS, DISTRICT_ONLY = "regular", "two_schools", "district_only"
TOBEDELETED, CLOSED_SCHOOL, DISABLED, ADDED = "tobedeleted", "closed_school", "disabled", "added"
STUDENT_CATEGORIES = (REGULAR, TWO_SCHOOLS, DISTRICT_ONLY, TOBEDELETED, CLOSED_SCHOOL, DISABLED, ADDED)
STUDENTS_PER_ADDED_SCHOOL = 3
COUNT_KEYS = ("orgs", "schools", "active_schools", "teachers", "users", "students", "active_students",
              "tobedeleted_students", "disabled_students", "two_school_students", "district_only_students",
              "closed_school_students")
UPDATABLE_FIELDS = frozenset(
    {"status", "enabledUser", "givenName", "familyName", "middleName", "preferredFirstName", "username", "email",
     "identifier", "grades", "orgs", "sms", "phone", "userMasterIdentifier"}
)


def mix64(x: int) -> int:
    """splitmix64: a fast, well-spread 64-bit hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def format_timestamp(ms: int) -> str:
    """Epoch milliseconds -> `2025-07-01T00:00:00.000Z` (fixed width, so strings sort like the instants)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def parse_timestamp(text: str) -> int:
    """An ISO 8601 date or date-time (naive means UTC) -> epoch milliseconds; ValueError if it is not one."""
    parsed = datetime.fromisoformat(text.strip())
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return int(parsed.timestamp() * 1000)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class DistrictShape:
    """How big the district is; the same shape always yields the same district."""

    schools: int = 5
    students: int = 500
    seed: int = 42
    teachers_per_school: int = 3

    def __post_init__(self) -> None:
        if self.schools < 1 or self.students < 0 or self.teachers_per_school < 0:
            raise ValueError(f"invalid district shape: {self}")


def guid_key(sourced_id: str) -> int:
    """The first 64 bits of a GUID string, as an int (ValueError for anything else)."""
    if len(sourced_id) != 36:
        raise ValueError(sourced_id)
    return int(sourced_id[:8] + sourced_id[9:13] + sourced_id[14:18], 16)
