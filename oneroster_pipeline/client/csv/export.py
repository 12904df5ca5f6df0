"""The files of one OneRoster CSV export on disk (a folder or a .zip) and its checked manifest.csv.

`Export` finds the files (in a zip, in the folder holding manifest.csv; a file found twice, in two folders or in
two letter cases, is refused rather than guessed at), reads the manifest (the OneRoster version, `file.orgs` /
`file.users` / `file.roles` = bulk | delta | absent) and refuses anything inconsistent with a `CsvExportError`
naming the file; `copy(name)` puts a file into the private work directory in one dialect.
"""

from __future__ import annotations

import csv
import logging
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from ..errors import OneRosterError
from ..settings import VERSIONS
from .dialect import header_fields, normalise_copy

__all__ = ["FILES", "FILE_MODES", "MANIFEST", "CsvExportError", "Export", "header_of"]

log = logging.getLogger(__name__)

MANIFEST = "manifest.csv"
FILES = {"orgs": "orgs.csv", "users": "users.csv", "roles": "roles.csv"}
FILE_MODES = ("bulk", "delta", "absent")


class CsvExportError(OneRosterError):
    """The export cannot be read: a missing or inconsistent manifest.csv, a missing file or column, a corrupt zip
    or file. `file` names the file at fault (e.g. "manifest.csv"); the message starts with it."""

    def __init__(self, file: str, message: str, where: str | None = None) -> None:
        self.file = file
        super().__init__(f"{file}: {message}" + (f" (in {where})" if where else ""))


class Export:
    """The export at `path` (a .zip, a folder, or the folder's manifest.csv): its files, its manifest (`manifest`,
    `modes` per file key, `version` "1.1" | "1.2"), and normalised copies of its files in `workdir`."""

    def __init__(self, path: Path, workdir: Path) -> None:
        self.path = path
        self.workdir = workdir
        self._locate()
        self.manifest = self._read_manifest()
        self.modes: dict[str, str] = {}
        self.version = self._check_manifest()

    def has(self, name: str) -> bool:
        return name in self._members

    def copy(self, name: str) -> Path:
        """The file copied (from the folder, or extracted from the zip) into the work directory in one dialect:
        no byte order mark, LF line ends (dialect.normalise_copy). Copied once."""
        member = self._members.get(name)
        if member is None:
            raise CsvExportError(name, f"missing from {self.path}")
        target = self.workdir / name
        if not target.exists():
            try:
                if self._zip is None:
                    with open(member, "rb") as source:
                        normalise_copy(source, target)
                else:
                    with zipfile.ZipFile(self._zip) as archive, archive.open(member) as source:
                        normalise_copy(source, target)
            except (zipfile.BadZipFile, OSError, EOFError) as error:
                target.unlink(missing_ok=True)
                origin = self._zip.name if self._zip else self.path
                raise CsvExportError(name, f"cannot be copied from {origin} ({error})") from None
        return target

    def header(self, name: str) -> list[str]:
        """The header row of a file (read from the zip member without extracting the whole file)."""
        if self._zip is None:
            return header_of(self._members[name])
        with zipfile.ZipFile(self._zip) as archive, archive.open(self._members[name]) as raw:
            return header_fields(raw.read(1 << 20))

    def _locate(self) -> None:
        """Find the export's files: `self._members` maps lower-cased file names to a path or a zip member. The
        files of the folder holding manifest.csv are the export's; a file the export needs (manifest.csv, orgs.csv,
        users.csv, roles.csv) found more than once anywhere in the export, in any folder and any letter case, is
        refused (`_refuse_ambiguous`): which one the district meant cannot be guessed."""
        path = self.path
        if path.is_file() and path.name.lower() == MANIFEST:
            path = path.parent
        self._zip: Path | None = None
        if path.is_dir():
            _refuse_ambiguous(_files_under(path), str(path))
            self._members = {p.name.lower(): p for p in path.iterdir() if p.is_file()}
            return
        if not path.exists():
            raise CsvExportError(str(self.path), "no such file or folder (ONEROSTER_CSV_PATH: the folder or .zip of "
                                                 "the OneRoster CSV export)")
        try:
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if not n.endswith("/")]
        except (zipfile.BadZipFile, OSError) as error:
            raise CsvExportError(path.name, f"not a readable zip file ({error})") from None
        _refuse_ambiguous(names, str(path))
        manifests = [n for n in names if PurePosixPath(n).name.lower() == MANIFEST]
        folder = str(PurePosixPath(manifests[0]).parent) if manifests else "."
        self._zip = path
        self._members = {PurePosixPath(n).name.lower(): n for n in names
                         if str(PurePosixPath(n).parent) == folder}

    def _read_manifest(self) -> dict[str, str]:
        if not self.has(MANIFEST):
            raise CsvExportError(MANIFEST, "missing: a OneRoster CSV export needs manifest.csv (propertyName,value) "
                                           "naming its OneRoster version and files", str(self.path))
        rows = list(_read_rows(self.copy(MANIFEST), MANIFEST))
        if not rows or [h.strip().lower() for h in rows[0][:2]] != ["propertyname", "value"]:
            raise CsvExportError(MANIFEST, "the header must be propertyName,value", str(self.path))
        return {r[0].strip().lower(): r[1].strip() for r in rows[1:] if len(r) >= 2 and r[0].strip()}

    def _check_manifest(self) -> str:
        """The OneRoster version ("1.1" | "1.2") from the manifest, checked against its other entries and the
        files present; anything inconsistent is a CsvExportError naming the file."""
        manifest, where = self.manifest, str(self.path)
        raw = manifest.get("oneroster.version")
        if not raw:
            raise CsvExportError(MANIFEST, "has no oneroster.version (1.1 or 1.2)", where)
        version = VERSIONS.get(raw.lower())
        if version is None:
            raise CsvExportError(MANIFEST, f"oneroster.version is {raw!r}: only OneRoster 1.1 and 1.2 CSV exports "
                                           "can be read", where)
        manifest_version = manifest.get("manifest.version")
        if manifest_version and manifest_version != "1.0":
            if VERSIONS.get(manifest_version.lower()) not in (None, version):
                raise CsvExportError(MANIFEST, f"is inconsistent: manifest.version {manifest_version} but "
                                               f"oneroster.version {raw}", where)
            log.warning(f"{MANIFEST} of {where}: manifest.version is {manifest_version!r} (expected 1.0)")
        self.modes = {}
        for key, name in FILES.items():
            given = manifest.get(f"file.{key}", "").lower()
            if given and given not in FILE_MODES:
                raise CsvExportError(MANIFEST, f"file.{key} is {given!r}; one of bulk, delta, absent", where)
            mode = given or ("bulk" if self.has(name) else "absent")  # an entry left out: go by the file
            if mode != "absent" and not self.has(name):
                raise CsvExportError(name, f"missing, but {MANIFEST} says file.{key}={mode}", where)
            if mode == "absent" and self.has(name):
                raise CsvExportError(MANIFEST, f"is inconsistent: file.{key}=absent but the export has {name}", where)
            self.modes[key] = mode
        if version == "1.1" and self.modes["roles"] != "absent":
            raise CsvExportError(MANIFEST, f"is inconsistent: oneroster.version {raw} but file.roles="
                                           f"{self.modes['roles']} (roles.csv is OneRoster 1.2)", where)
        if version == "1.2" and self.modes["users"] != "absent" and self.modes["roles"] == "absent":
            raise CsvExportError(MANIFEST, f"is inconsistent: oneroster.version {raw} with users.csv but no roles.csv "
                                           "(1.2 users get their roles and orgs from roles.csv)", where)
        if self.has("users.csv"):
            self._check_users_header(version, raw, where)
        return version

    def _check_users_header(self, version: str, raw: str, where: str) -> None:
        header = {h.strip().lower() for h in self.header("users.csv")}
        if version == "1.1" and "role" not in header:
            raise CsvExportError(MANIFEST, f"is inconsistent with users.csv: oneroster.version {raw} but users.csv "
                                           "has no role column (a 1.2 users.csv?)", where)
        if version == "1.2" and {"role", "orgsourcedids"} & header:
            raise CsvExportError(MANIFEST, f"is inconsistent with users.csv: oneroster.version {raw} but users.csv "
                                           "has the 1.1 columns role/orgSourcedIds", where)


def _files_under(folder: Path) -> list[str]:
    """The paths (relative, with /) of the files in `folder` and its sub-folders named like a file of the export."""
    wanted = {MANIFEST, *FILES.values()}
    found = []
    for root, _, names in os.walk(folder):
        found += [Path(root, n).relative_to(folder).as_posix() for n in names if n.lower() in wanted]
    return found


def _refuse_ambiguous(names: list[str], where: str) -> None:
    """A CsvExportError naming every candidate when manifest.csv, orgs.csv, users.csv or roles.csv is there more
    than once (`names`: the export's files, relative paths with /), in two folders or in two letter cases."""
    for wanted in (MANIFEST, *FILES.values()):
        candidates = sorted(n for n in names if PurePosixPath(n).name.lower() == wanted)
        if len(candidates) > 1:
            raise CsvExportError(wanted, f"the export holds {len(candidates)} candidate files for it: "
                                         f"{', '.join(candidates)}; which one is meant cannot be told, so nothing "
                                         "is read (keep exactly one)", where)


def header_of(path: Path) -> list[str]:
    """The header's column names, trailing empty ones dropped (a bad byte in a row is that row's problem)."""
    with open(path, "rb") as raw:
        return header_fields(raw.read(1 << 20))


def _read_rows(path: Path, name: str) -> Iterator[list[str]]:
    try:
        with open(path, encoding="utf-8-sig", newline="") as text:
            yield from csv.reader(text)
    except (UnicodeDecodeError, csv.Error) as error:
        raise CsvExportError(name, f"cannot be read as UTF-8 CSV ({error})") from None
