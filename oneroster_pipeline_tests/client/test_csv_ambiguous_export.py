"""An ambiguous CSV export is refused, never guessed at (issue 24, observation 8).

An export (zip or folder) holding a file it needs (manifest.csv, orgs.csv, users.csv, roles.csv) more than once, in
two folders or in two letter cases, fails with a CsvExportError naming every candidate: reading one of them silently
imported the wrong district's students (or too few) with no error.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from oneroster_pipeline.client.csv import CsvExportError, CsvSource
from oneroster_pipeline.client.settings import ConnectionSettings
from oneroster_pipeline.client.sources import open_source

MANIFEST = ("propertyName,value\nmanifest.version,1.0\noneroster.version,1.1\nfile.orgs,bulk\nfile.users,bulk\n"
            "file.roles,absent\n")
ORGS = "sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId\no1,,,North,school,N,\n"
HEADER = "sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,givenName,familyName\n"
USERS = HEADER + "s1,,,true,o1,student,s1,Ann,Smith\n"
OTHER_USERS = HEADER + "x1,,,true,o1,student,x1,Bob,Jones\nx2,,,true,o1,student,x2,Cy,Jones\n"


def _zip(path: Path, members: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return path


def _refused(path: Path) -> str:
    with pytest.raises(CsvExportError) as raised:
        with CsvSource.from_path(path) as source:
            list(source.student_batches())
    return str(raised.value)


def test_a_zip_with_users_csv_in_two_folders_is_refused_naming_both(tmp_path):
    export = _zip(tmp_path / "export.zip", {"district/manifest.csv": MANIFEST, "district/orgs.csv": ORGS,
                                            "district/users.csv": USERS, "backup/users.csv": OTHER_USERS})
    message = _refused(export)
    assert message.startswith("users.csv: ")
    assert "district/users.csv" in message and "backup/users.csv" in message and str(export) in message


def test_a_zip_with_users_csv_and_Users_csv_is_refused_naming_both(tmp_path):  # noqa: N802
    export = _zip(tmp_path / "export.zip", {"manifest.csv": MANIFEST, "orgs.csv": ORGS, "users.csv": USERS,
                                            "Users.csv": OTHER_USERS})
    message = _refused(export)
    assert "users.csv" in message.split(": ", 1)[1] and "Users.csv" in message


def test_a_zip_holding_two_exports_is_refused_naming_both_manifests(tmp_path):
    members = {}
    for folder, users in (("2026-01-05", USERS), ("2026-01-06", OTHER_USERS)):
        members |= {f"{folder}/manifest.csv": MANIFEST, f"{folder}/orgs.csv": ORGS, f"{folder}/users.csv": users}
    message = _refused(_zip(tmp_path / "export.zip", members))
    assert "2026-01-05/manifest.csv" in message and "2026-01-06/manifest.csv" in message


def _case_sensitive(folder: Path) -> bool:
    probe = folder / "case-probe"
    probe.write_text("")
    try:
        return not (folder / "CASE-PROBE").exists()
    finally:
        probe.unlink()


def _folder(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_a_folder_with_users_csv_and_Users_csv_is_refused_naming_both(tmp_path):  # noqa: N802
    if not _case_sensitive(tmp_path):
        pytest.skip("this filesystem does not tell users.csv from Users.csv (one file)")
    export = _folder(tmp_path / "export", {"manifest.csv": MANIFEST, "orgs.csv": ORGS, "users.csv": USERS,
                                           "Users.csv": OTHER_USERS})
    message = _refused(export)
    assert "users.csv" in message.split(": ", 1)[1] and "Users.csv" in message
    # the same through the front door (ONEROSTER_CSV_PATH), before anything is read
    with pytest.raises(CsvExportError, match="Users.csv"):
        open_source(ConnectionSettings(provider="csv", csv_path=str(export)))


def test_a_folder_with_another_users_csv_in_a_sub_folder_is_refused_naming_both(tmp_path):
    export = _folder(tmp_path / "export", {"manifest.csv": MANIFEST, "orgs.csv": ORGS, "users.csv": USERS,
                                           "old/USERS.CSV": OTHER_USERS})
    message = _refused(export)
    assert "users.csv, " in message or ", users.csv" in message
    assert "old/USERS.CSV" in message


def test_one_of_each_file_beside_other_files_is_read(tmp_path):
    export = _zip(tmp_path / "export.zip", {"district/manifest.csv": MANIFEST, "district/orgs.csv": ORGS,
                                            "district/users.csv": USERS, "district/classes.csv": "sourcedId\n",
                                            "README.txt": "users.csv is in district/", "__MACOSX/district/._users.csv":
                                            "\x00"})
    with CsvSource.from_path(export) as source:
        assert [row["sourced_id"] for batch in source.student_batches() for row in batch.to_pylist()] == ["s1"]
