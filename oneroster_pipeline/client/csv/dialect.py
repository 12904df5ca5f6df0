"""What real OneRoster CSV exports look like on disk, reduced to one dialect before DuckDB reads them.

Exports written by other tools mix line endings (an LF header over CRLF rows, old-Mac CR), start with a UTF-8 byte
order mark, pad the header with empty trailing columns (`...,orgSourcedId,,`) and quote every field or none.
DuckDB's CSV reader in strict mode (which it needs to see stray quotes) accepts only one line ending per file, so:
- `normalise_copy` streams a file (1 MB at a time, memory bounded whatever its size) into a copy without the byte
  order mark and with every CRLF and lone CR turned into LF. A line break counts as one line whatever it was, so
  line numbers in the copy are the lines an editor shows in the original.
- `header_fields` reads the header line leniently and drops the empty-named trailing columns.
- `leading_field` reads one field of a line that DuckDB could not split, only when every field up to it is clean
  CSV, so a rejected row still carries its sourcedId whenever it can be read.
- `blank_lines` copies a file with some lines emptied (a line whose stray quote swallowed the lines after it), so
  the line numbers stay those of the original.
Never imports dagster.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import BinaryIO

__all__ = ["CHUNK", "blank_lines", "header_fields", "leading_field", "normalise_copy"]

CHUNK = 1 << 20
BOM = b"\xef\xbb\xbf"


def normalise_copy(source: BinaryIO, target: Path) -> None:
    """Copy `source` to `target` without a leading BOM and with LF line ends only (CRLF, CR -> LF)."""
    with open(target, "wb") as out:
        head = source.read(len(BOM))
        carry = b"" if head == BOM else head
        while True:
            chunk = source.read(CHUNK)
            data = carry + chunk
            if chunk and data.endswith(b"\r"):  # a CRLF may straddle the chunks
                data, carry = data[:-1], b"\r"
            else:
                carry = b""
            out.write(data.replace(b"\r\n", b"\n").replace(b"\r", b"\n"))
            if not chunk:
                return


def header_fields(line: bytes) -> list[str]:
    """The column names of a header line (bytes up to the first line end), trailing empty names dropped."""
    text = line.decode("utf-8-sig", errors="replace")
    for end in ("\r", "\n"):
        text = text.split(end, 1)[0]
    fields = next(csv.reader([text]), [])
    while fields and not fields[-1].strip():
        fields.pop()
    return fields


def leading_field(line: str, index: int) -> str | None:
    """Field `index` (0-based) of a CSV line, as given (it is a sourcedId: opaque, never trimmed; None when blank),
    when fields 0..index are clean CSV (unquoted without a quote, or quoted with doubled inner quotes and a delimiter
    or the end right after); else None."""
    at, n = 0, len(line)
    for position in range(index + 1):
        if at < n and line[at] == '"':
            end, value = at + 1, []
            while True:
                close = line.find('"', end)
                if close < 0:
                    return None
                value.append(line[end:close])
                if line.startswith('"', close + 1):
                    value.append('"')
                    end = close + 2
                    continue
                at = close + 1
                break
            field = "".join(value)
            if at < n and line[at] != ",":
                return None
        else:
            comma = line.find(",", at)
            end = n if comma < 0 else comma
            field = line[at:end]
            if '"' in field:
                return None
            at = end
        if position == index:
            return field if field.strip() and "\ufffd" not in field else None
        if at >= n:
            return None  # the line ends before the field
        at += 1  # the comma
    return None


def blank_lines(path: Path, lines: set[int]) -> None:
    """Empty the given lines (1-based) of an LF file in place (through a copy), keeping every line end."""
    copy = path.with_suffix(path.suffix + ".tmp")
    with open(path, "rb") as source, open(copy, "wb") as out:
        out.writelines(b"\n" if number in lines and line.endswith(b"\n") else b"" if number in lines else line
                       for number, line in enumerate(source, start=1))
    shutil.move(copy, path)
