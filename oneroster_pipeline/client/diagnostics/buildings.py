"""The schools a provider shares against the district's known buildings (`building_sis`), for the connection test.

`check_schools` reports the schools without a building and the buildings without a school; `known_buildings`
reads the building_sis column of a buildings CSV (ONEROSTER_BUILDINGS_CSV).
"""

from __future__ import annotations

import csv

from ..paging import Page
from ..settings import SettingsError
from .report import OK, WARNING, ConnectionReport

__all__ = ["all_active_schools", "check_schools", "known_buildings"]


def check_schools(source, report: ConnectionReport, first: Page, buildings: set[str] | None, get) -> None:
    """The "schools" row; with `buildings`, the "schools vs buildings" row over every active school (`first` page,
    then for REST the next pages through `get(path, params, limit, offset)`)."""
    count = f"{report.school_count}" if report.school_count_exact else f"at least {report.school_count}"
    sample = f" (e.g. {', '.join(report.sample_schools)})" if report.sample_schools else ""
    if report.school_count == 0:
        report.add("schools", WARNING, "the provider shares no school: check the district's sharing settings")
        return
    report.add("schools", OK, f"{count} visible{sample}")
    if buildings is None:
        return
    schools = all_active_schools(source, first, get)
    known = set(schools)
    report.schools_without_building = sorted(f"{name} ({sid})" for sid, name in schools.items() if sid not in buildings)
    report.buildings_without_school = sorted(buildings - known)
    if not report.schools_without_building and not report.buildings_without_school:
        report.add("schools vs buildings", OK, f"each of the {len(known)} active schools is one of the "
                   f"{len(buildings)} buildings")
        return
    parts = []
    if report.schools_without_building:
        parts.append(f"{len(report.schools_without_building)} schools with no building: "
                     f"{_sample(report.schools_without_building)} (building sync creates them)")
    if report.buildings_without_school:
        parts.append(f"{len(report.buildings_without_school)} buildings with no school: "
                     f"{_sample(report.buildings_without_school)} (their students would be ignored; check the "
                     "building SIS ids and the district's sharing)")
    report.add("schools vs buildings", WARNING, "; ".join(parts))


def _sample(items: list[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def all_active_schools(source, first: Page, get) -> dict[str, str]:
    """sourcedId -> name of every active school (pages through /schools)."""
    schools: dict[str, str] = {}
    page, limit = first, source.settings.page_size
    for _ in range(10_000):
        for record in page.records:
            if isinstance(record, dict) and isinstance(record.get("sourcedId"), str):
                status = str(record.get("status") or "active").lower()
                if status == "active":
                    schools[record["sourcedId"]] = str(record.get("name") or "")
        offset = page.offset + len(page.records)
        if not page.records or (page.total is not None and offset >= page.total) or page.has_next is False or \
                (page.total is None and page.has_next is None and len(page.records) < limit):
            break
        page, _ = get("/schools", {}, limit, offset)
    return schools


def known_buildings(path: str) -> list[str]:
    """The building_sis column of a buildings CSV (`name,building_sis`, as ONEROSTER_BUILDINGS_CSV)."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = csv.DictReader(handle)
        if "building_sis" not in (rows.fieldnames or []):
            raise SettingsError("ONEROSTER_BUILDINGS_CSV", f"{path} has no building_sis column")
        return [row["building_sis"] for row in rows if row.get("building_sis")]
