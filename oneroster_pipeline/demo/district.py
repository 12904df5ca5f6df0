"""A deterministic synthetic school district, computed record by record, plus a small mutable overlay."""

# Student `i`'s record is a pure function of (seed, i) and the overlay, so a district of a million students never sits
# in memory: the server asks for the records it is about to send. Records here are *logical* (version neutral,
# OneRoster field names, a single `role`, `orgs` as a list of sourcedIds with the primary org first, a real boolean
# `enabledUser`); `render.py` turns them into 1.1 or 1.2 JSON and `csv_export.py` into CSV rows.
#
# Categories of students (by a slot that cycles through 0..99, so the shares are exact per hundred students): 2%
# enrolled in two schools, 1% attached only to the district org, 1% `tobedeleted` (about half of them at the closed
# school, which is their only school), 2% with `enabledUser` false, the rest regular. A two-school student's primary
# school (listed first) is the one with the lower sourcedId (in the plain id namespace: an `id_namespace` renames ids
# but keeps the district, primaries included): 1.1 cannot name a primary and the pipeline then takes the lowest
# sourcedId, so every rendering (1.1, 1.2, CSV) places them alike; `update_student(orgs=[...])` sets any primary (the
# first org), e.g. the higher one, which only 1.2's roleType / primaryOrg can tell.

from __future__ import annotations

import hashlib
import threading
import uuid
import zlib
from collections import Counter
from collections.abc import Iterator
from itertools import islice
from typing import Any

import numpy as np

from oneroster_pipeline.demo import names
from oneroster_pipeline.demo.records import (
    ADDED,
    BASE_DATE_MS,
    CLOSED_SCHOOL,
    COUNT_KEYS,
    DISABLED,
    DISTRICT_ONLY,
    GRADES,
    LEVELS,
    NAMESPACE,
    REGULAR,
    SPREAD_MS,
    STUDENTS_PER_ADDED_SCHOOL,
    TOBEDELETED,
    TWO_SCHOOLS,
    UPDATABLE_FIELDS,
    DistrictShape,
    format_timestamp,
    guid_key,
    mix64,
    now_ms,
)


class District:
    """The deterministic district plus a thread-safe overlay of changes (see the notes atop this module)."""

    def __init__(self, shape: DistrictShape, id_namespace: str = "") -> None:
        self.shape = shape
        # a non-empty namespace rewrites every sourcedId (orgs, students, teachers) deterministically while names,
        # identifiers, usernames and emails stay: the same district as another provider would identify it
        self.id_namespace = id_namespace
        seed = shape.seed
        self._lock = threading.RLock()
        self._hash_prefixes: dict[str, Any] = {}
        self._student_key = mix64(seed * 3 + 1)
        self._teacher_key = mix64(seed * 3 + 2)
        self._date_key = mix64(seed * 3 + 3)
        self._number_prefix = f"{seed % 1000:03d}"
        town = names.TOWNS[seed % len(names.TOWNS)]
        self._domain = f"{names.ascii_slug(town)}-usd.example.org"
        self._given = tuple((n, names.ascii_slug(n)) for n in names.GIVEN_NAMES)
        self._family = tuple((n, names.ascii_slug(n)) for n in names.FAMILY_NAMES)
        built = self._build_orgs(town)
        self._base_orgs = [o for o, _ in built]
        self._school_grades = {o["sourcedId"]: grades for o, grades in built if grades}
        self.district_id = self._base_orgs[0]["sourcedId"]
        self._regular_school_ids = [o["sourcedId"] for o in self._base_orgs[1 : 1 + shape.schools]]
        plain = District(shape)._regular_school_ids if id_namespace else self._regular_school_ids
        self._school_rank = {k: rank for rank, k in enumerate(sorted(range(shape.schools), key=plain.__getitem__))}
        self.department_id = self._base_orgs[-2]["sourcedId"]
        self.closed_school_id = self._base_orgs[-1]["sourcedId"]
        # overlay
        self.version = 0
        self._removed: set[int] = set()
        self._updates: dict[int, dict] = {}
        self._touched: dict[int, int] = {}
        self._org_touched: dict[str, int] = {}
        self._added_schools: list[dict] = []
        self._added_students: dict[int, str] = {}
        self._student_lookup: tuple[np.ndarray, np.ndarray] | None = None
        self._teacher_lookup: dict[str, int] | None = None

    # ---- identifiers -------------------------------------------------------------------------------------------
    def guid(self, kind: str, index: int) -> str:
        """uuid5(namespace, f"{seed}:{kind}:{index}"), computed from a cached hash prefix (it is on the hot path)."""
        prefix = self._hash_prefixes.get(kind)
        if prefix is None:
            scope = f"{self.shape.seed}:{self.id_namespace}:" if self.id_namespace else f"{self.shape.seed}:"
            prefix = hashlib.sha1(NAMESPACE.bytes + f"{scope}{kind}:".encode())
            self._hash_prefixes[kind] = prefix
        digest = prefix.copy()
        digest.update(str(index).encode())
        b = bytearray(digest.digest()[:16])
        b[6] = (b[6] & 0x0F) | 0x50
        b[8] = (b[8] & 0x3F) | 0x80
        x = b.hex()
        return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"

    def role_id(self, user_id: str, org_id: str) -> str:
        """A stable sourcedId for the role (user, org) — roles.csv needs one; the API's roles have none."""
        return str(uuid.uuid5(NAMESPACE, f"{self.shape.seed}:role:{user_id}:{org_id}"))

    def _base_date(self, key: int, index: int) -> str:
        return format_timestamp(BASE_DATE_MS + mix64(key ^ index) % SPREAD_MS)

    # ---- orgs --------------------------------------------------------------------------------------------------
    def _build_orgs(self, town: str) -> list[tuple[dict, tuple[str, ...]]]:
        shape, key = self.shape, mix64(self.shape.seed * 3 + 4)
        district_number = f"{mix64(key) % 9_000_000 + 1_000_000}"
        district_id = self.guid("district", 0)

        def org(kind: str, index: int, name: str, org_type: str, identifier: str, status: str = "active") -> dict:
            return {"sourcedId": self.guid(kind, index), "status": status,
                    "dateLastModified": self._base_date(key, zlib.crc32(kind.encode()) * 1000 + index),
                    "metadata": {"demo": {"kind": kind}}, "name": name, "type": org_type, "identifier": identifier,
                    "parent": district_id, "children": []}

        district = org("district", 0, f"{town} Unified School District", "district", district_number)
        district["parent"] = None
        built = [(district, ())]
        for k in range(shape.schools):
            stem = names.SCHOOL_STEMS[(k + shape.seed) % len(names.SCHOOL_STEMS)]
            level, grades = LEVELS[k % 3]
            suffix = f" {k // len(names.SCHOOL_STEMS) + 1}" if k >= len(names.SCHOOL_STEMS) else ""
            built.append((org("school", k, f"{stem} {level}{suffix}", "school", f"{district_number}{k + 1:05d}"),
                          grades))
        built.append((org("department", 0, "Department of Student Services", "department",
                          f"{district_number}-SS"), ()))
        built.append((org("closed-school", 0, "Old Mill Elementary School", "school", f"{district_number}99999",
                          status="tobedeleted"), LEVELS[0][1]))
        district["children"] = [o["sourcedId"] for o, _ in built[1:]]
        return built

    def orgs(self) -> list[dict]:
        """Every org in served order (district, schools, department, closed school, added schools), overlay applied."""
        with self._lock:
            result = [dict(o) for o in self._base_orgs] + [dict(o) for o in self._added_schools]
            result[0]["children"] = result[0]["children"] + [o["sourcedId"] for o in self._added_schools]
            for o in result:
                if o["sourcedId"] in self._org_touched:
                    o["dateLastModified"] = format_timestamp(self._org_touched[o["sourcedId"]])
            return result

    def org(self, sourced_id: str) -> dict | None:
        return next((o for o in self.orgs() if o["sourcedId"] == sourced_id), None)

    def school_ids(self) -> list[str]:
        """sourcedIds of every org of type school, in served order (regular, closed, then added schools)."""
        return [o["sourcedId"] for o in self.orgs() if o["type"] == "school"]

    # ---- students ----------------------------------------------------------------------------------------------
    @property
    def student_slots(self) -> int:
        """Number of student indexes (base students plus added ones); removed students leave a hole."""
        return self.shape.students + len(self._added_students)

    @property
    def removed_count(self) -> int:
        return len(self._removed)

    def category(self, i: int) -> str:
        """The category of base student `i` (one of STUDENT_CATEGORIES), before any overlay update."""
        if i >= self.shape.students:
            return ADDED
        slot = (i * 37 + self.shape.seed) % 100
        if slot < 2:
            return TWO_SCHOOLS if self.shape.schools > 1 else REGULAR
        if slot == 2:
            return DISTRICT_ONLY
        if slot == 3:
            return CLOSED_SCHOOL if (i // 100 + self.shape.seed) % 2 == 0 else TOBEDELETED
        return DISABLED if slot < 6 else REGULAR

    def _base_orgs_of(self, i: int, h: int, category: str) -> list[str]:
        if category == ADDED:
            return [self._added_students[i]]
        if category == DISTRICT_ONLY:
            return [self.district_id]
        if category == CLOSED_SCHOOL:
            return [self.closed_school_id]
        schools = self._regular_school_ids
        first = h % len(schools)
        if category == TWO_SCHOOLS:
            second = (first + 1 + (h >> 8) % (len(schools) - 1)) % len(schools)
            # the primary: the lower (plain) sourcedId, see the notes atop this module
            return [schools[k] for k in sorted((first, second), key=self._school_rank.__getitem__)]
        return [schools[first]]

    def student_orgs(self, i: int) -> list[str] | None:
        """The org sourcedIds of student `i` (primary first), cheaply; None if the student is removed."""
        if i in self._removed:
            return None
        update = self._updates.get(i)
        if update and "orgs" in update:
            return list(update["orgs"])
        return self._base_orgs_of(i, mix64(self._student_key ^ i), self.category(i))

    def student(self, i: int) -> dict | None:
        """The logical record of student index `i` with the overlay applied; None if removed."""
        if i in self._removed:
            return None
        h = mix64(self._student_key ^ i)
        category = self.category(i)
        orgs = self._base_orgs_of(i, h, category)
        grades = self._school_grades.get(orgs[0], GRADES)
        given, given_slug = self._given[(h >> 24) % len(self._given)]
        family, family_slug = self._family[(h >> 32) % len(self._family)]
        number = f"{self._number_prefix}{i:07d}"
        username = f"{given_slug}.{family_slug}{i}"
        record = {
            "sourcedId": self.guid("student", i),
            "status": "tobedeleted" if category in (TOBEDELETED, CLOSED_SCHOOL) else "active",
            "dateLastModified": self._base_date(self._date_key, i),
            "metadata": {"demo": {"kind": "student", "index": i}},
            "userMasterIdentifier": f"SSID{number}",
            "username": username,
            "userIds": [{"type": "studentNumber", "identifier": number}, {"type": "LDAP", "identifier": username}],
            "enabledUser": category != DISABLED,
            "givenName": given,
            "familyName": family,
            "middleName": names.MIDDLE_NAMES[(h >> 40) % len(names.MIDDLE_NAMES)],
            "preferredFirstName": names.PREFERRED_NAMES[(h >> 48) % 8] if (h >> 56) % 10 == 0 else "",
            "role": "student",
            "orgs": orgs,
            "identifier": number,
            "email": f"{username}@students.{self._domain}",
            "sms": "",
            "phone": "",
            "grades": [grades[(h >> 16) % len(grades)]],
        }
        return self._apply_overlay(i, record)

    def _apply_overlay(self, i: int, record: dict) -> dict:
        update = self._updates.get(i)
        if update:
            record.update(update)
        touched = self._touched.get(i)
        if touched is not None:
            record["dateLastModified"] = format_timestamp(touched)
        return record

    # ---- teachers ----------------------------------------------------------------------------------------------
    @property
    def teacher_count(self) -> int:
        return self.shape.schools * self.shape.teachers_per_school

    def teacher(self, t: int) -> dict:
        """The logical record of teacher `t` (teachers_per_school of them per regular school)."""
        h = mix64(self._teacher_key ^ t)
        given, given_slug = self._given[(h >> 24) % len(self._given)]
        family, family_slug = self._family[(h >> 32) % len(self._family)]
        number = f"E{self._number_prefix}{t:05d}"
        username = f"{given_slug}.{family_slug}.t{t}"
        return {
            "sourcedId": self.guid("teacher", t),
            "status": "active",
            "dateLastModified": self._base_date(self._teacher_key, t),
            "metadata": {"demo": {"kind": "teacher", "index": t}},
            "userMasterIdentifier": f"STAFF{number}",
            "username": username,
            "userIds": [{"type": "employeeNumber", "identifier": number}, {"type": "LDAP", "identifier": username}],
            "enabledUser": True,
            "givenName": given,
            "familyName": family,
            "middleName": names.MIDDLE_NAMES[(h >> 40) % len(names.MIDDLE_NAMES)],
            "preferredFirstName": "",
            "role": "teacher",
            "orgs": [self._regular_school_ids[t // max(1, self.shape.teachers_per_school)]],
            "identifier": number,
            "email": f"{username}@{self._domain}",
            "sms": "",
            "phone": f"+1-555-01{t % 100:02d}",
            "grades": [],
        }

    # ---- users (students then teachers) ------------------------------------------------------------------------
    @property
    def user_slots(self) -> int:
        return self.student_slots + self.teacher_count

    def user(self, k: int) -> dict | None:
        """The user at served position `k`: students first, then teachers."""
        slots = self.student_slots
        return self.student(k) if k < slots else self.teacher(k - slots)

    def student_index(self, sourced_id: str) -> int | None:
        """The index of the student with this sourcedId (removed or not), via a lazily built sorted key array."""
        with self._lock:
            for i in self._added_students:
                if self.guid("student", i) == sourced_id:
                    return i
            if self._student_lookup is None:
                keys = np.fromiter((guid_key(self.guid("student", i)) for i in range(self.shape.students)),
                                   dtype=np.uint64, count=self.shape.students)
                order = np.argsort(keys, kind="stable")
                self._student_lookup = (keys[order], order)
        try:
            key = guid_key(sourced_id)
        except ValueError:
            return None
        keys, order = self._student_lookup
        pos = int(np.searchsorted(keys, np.uint64(key)))
        while pos < len(keys) and int(keys[pos]) == key:
            if self.guid("student", int(order[pos])) == sourced_id:
                return int(order[pos])
            pos += 1
        return None

    def find_user(self, sourced_id: str) -> dict | None:
        """The current logical record of the student or teacher with this sourcedId, else None."""
        i = self.student_index(sourced_id)
        if i is not None:
            return self.student(i)
        if self._teacher_lookup is None:
            self._teacher_lookup = {self.guid("teacher", t): t for t in range(self.teacher_count)}
        t = self._teacher_lookup.get(sourced_id)
        return None if t is None else self.teacher(t)

    # ---- overlay -----------------------------------------------------------------------------------------------
    def _require_student(self, sourced_id: str) -> int:
        i = self.student_index(sourced_id)
        if i is None:
            raise KeyError(f"no student with sourcedId {sourced_id!r}")
        return i

    def _touch(self, i: int) -> None:
        self._touched[i] = now_ms()
        self.version += 1

    def remove_student(self, sourced_id: str) -> None:
        """The student disappears from every response (as a deleted record does in a full pull)."""
        with self._lock:
            i = self._require_student(sourced_id)
            self._removed.add(i)
            self._touch(i)

    def restore_student(self, sourced_id: str) -> None:
        """A removed student comes back, with dateLastModified now."""
        with self._lock:
            i = self._require_student(sourced_id)
            self._removed.discard(i)
            self._touch(i)

    def update_student(self, sourced_id: str, **fields) -> None:
        """Change logical fields of a student (e.g. givenName="Zoë", status="tobedeleted", orgs=[...])."""
        unknown = set(fields) - UPDATABLE_FIELDS
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}; updatable: {sorted(UPDATABLE_FIELDS)}")
        if isinstance(fields.get("enabledUser"), str):  # accept the OneRoster spelling "true" / "false" too
            fields["enabledUser"] = fields["enabledUser"].strip().lower() == "true"
        with self._lock:
            i = self._require_student(sourced_id)
            self._updates[i] = {**self._updates.get(i, {}), **fields}
            self._touch(i)

    def add_school(self, name: str) -> str:
        """Add an active school (child of the district) with STUDENTS_PER_ADDED_SCHOOL new students in it."""
        with self._lock:
            k = len(self._added_schools)
            sourced_id = self.guid("added-school", k)
            stamp = now_ms()
            self._added_schools.append({
                "sourcedId": sourced_id, "status": "active", "dateLastModified": format_timestamp(stamp),
                "metadata": {"demo": {"kind": "added-school"}}, "name": name, "type": "school",
                "identifier": f"NEW{k + 1:04d}", "parent": self.district_id, "children": []})
            self._org_touched[self.district_id] = stamp
            for _ in range(STUDENTS_PER_ADDED_SCHOOL):
                i = self.student_slots
                self._added_students[i] = sourced_id
                self._touched[i] = stamp
            self.version += 1
            return sourced_id

    # ---- expectations for tests and the CSV export -------------------------------------------------------------
    def expected_students(self) -> Iterator[dict]:
        """Every current student's logical record, in served order."""
        for i in range(self.student_slots):
            record = self.student(i)
            if record is not None:
                yield record

    def expected_users(self) -> Iterator[dict]:
        """Every current user (students, then teachers), in served order."""
        yield from self.expected_students()
        for t in range(self.teacher_count):
            yield self.teacher(t)

    def student_ids(self, limit: int | None = None) -> list[str]:
        """sourcedIds of current students in served order (at most `limit`)."""
        result: list[str] = []
        for i in range(self.student_slots):
            if limit is not None and len(result) >= limit:
                break
            if i not in self._removed:
                result.append(self.guid("student", i))
        return result

    def students_in_category(self, category: str, limit: int | None = None) -> list[str]:
        """sourcedIds of current students whose base category is `category` (see STUDENT_CATEGORIES)."""
        found = (self.guid("student", i) for i in range(self.student_slots)
                 if i not in self._removed and self.category(i) == category)
        return list(islice(found, limit))

    def counts(self) -> dict[str, int]:
        """Counts derived from the current records (overlay included): orgs, schools, users and kinds of student."""
        orgs = self.orgs()
        counts = Counter(orgs=len(orgs), teachers=self.teacher_count, users=self.teacher_count,
                         schools=sum(o["type"] == "school" for o in orgs),
                         active_schools=sum(o["type"] == "school" and o["status"] == "active" for o in orgs))
        for s in self.expected_students():
            counts["students"] += 1
            counts["users"] += 1
            counts[f"{s['status']}_students"] += 1
            counts["disabled_students"] += not s["enabledUser"]
            counts["two_school_students"] += len(s["orgs"]) > 1
            counts["district_only_students"] += s["orgs"] == [self.district_id]
            counts["closed_school_students"] += s["orgs"] == [self.closed_school_id]
        return {key: counts[key] for key in COUNT_KEYS}
