"""A page's JSON body -> its records, where one bad record never sinks the page.

The whole body is decoded at once (msgspec; the standard library's `json` for what msgspec refuses). When that
fails, or gives text UTF-8 cannot encode, the body is split into its records at the byte level (strings and
brackets tracked without recursion, so nesting of any depth is fine) and each record is decoded on its own. A record
with invalid UTF-8 bytes, a lone surrogate (`\\ud800`), JSON nested deeper than Python can decode, or broken JSON is
replaced by a `Quarantined` placeholder naming its position, the field and the reason; the rest of the page goes on.
A body that cannot be split into records at all (truncated, not an object, no envelope list) is `Unsplittable`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

try:  # a dependency (pyproject.toml)
    from msgspec import DecodeError as _FastDecodeError
    from msgspec.json import decode as _fast_decode
except ImportError:  # pragma: no cover
    _fast_decode, _FastDecodeError = None, ValueError

_SURROGATE = re.compile("[\ud800-\udfff]")
_TOKEN = re.compile(rb'["\[\]{},]')
_STRING_REST = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*"', re.S)  # after an opening quote, through the closing one
_SPACE = b" \t\r\n"


@dataclass(frozen=True)
class Quarantined:
    """A record of a page that could not be decoded: left out with where it was, the field and the reason."""

    position: int  # in the page
    field: str
    reason: str
    sourced_id: str | None  # when its sourcedId could still be read


class Unsplittable(ValueError):
    """The body cannot be cut into records (truncated, unbalanced, not a JSON object, or no envelope list)."""


def decode_page(body: bytes, envelopes: tuple[str, ...]) -> tuple[object, bool]:
    """(the decoded page, clean): `clean` when every record decoded at once (the common page); otherwise any record
    that cannot be decoded is a `Quarantined` placeholder in the envelope's list. Raises `Unsplittable` when the
    body is not JSON and cannot be split into records (its shape is the caller's to check)."""
    if _fast_decode is not None:
        try:
            return _fast_decode(body), True  # valid UTF-8, no lone surrogate, sane depth
        except (_FastDecodeError, RecursionError):
            pass
    return _decode_slowly(body, envelopes), False


def _decode_slowly(body: bytes, envelopes: tuple[str, ...]) -> object:
    """A body msgspec refused: json.loads, the surrogate check, or the split into records."""
    try:
        payload = json.loads(body)  # what msgspec refuses that json accepts: NaN, 1e400, a BOM, UTF-16
    except (ValueError, RecursionError):
        return _split_and_decode(body, envelopes)
    key = next((k for k in envelopes if isinstance(payload, dict) and isinstance(payload.get(k), list)), None)
    if key is not None:
        payload[key] = [_checked(record, position) for position, record in enumerate(payload[key])]
    return payload


def _checked(record: object, position: int) -> object:
    """`record`, or its placeholder when a string in it holds a lone surrogate (which UTF-8 cannot encode)."""
    where = _surrogate_path(record)
    if where is None:
        return record
    sourced_id = record.get("sourcedId") if isinstance(record, dict) else None
    sourced_id = sourced_id if isinstance(sourced_id, str) and not _SURROGATE.search(sourced_id) else None
    return Quarantined(position, where, "holds a lone surrogate (e.g. \\ud800), text UTF-8 cannot encode", sourced_id)


def _surrogate_path(value: object, path: str = "") -> str | None:
    """The path of the first string (or key) holding a lone surrogate, e.g. 'givenName' or 'roles[0].org'."""
    stack = [(path, value)]
    while stack:
        where, current = stack.pop()
        if isinstance(current, str):
            if _SURROGATE.search(current):
                return where or "(record)"
        elif isinstance(current, dict):
            for key, item in current.items():
                if _SURROGATE.search(key):
                    return where or "(record)"
                stack.append((f"{where}.{key}" if where else key, item))
        elif isinstance(current, list):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(current))
    return None


def _split_and_decode(body: bytes, envelopes: tuple[str, ...]) -> dict:
    start = _skip_space(body, 3 if body.startswith(b"\xef\xbb\xbf") else 0)
    if start >= len(body) or body[start] != ord("{"):
        raise Unsplittable("the body is not a JSON object")
    for key_raw, value_start, value_end in _members(body, start)[0]:
        key = _decode_key(key_raw)
        if key in envelopes and body[value_start:value_start + 1] == b"[":
            elements, _ = _elements(body, value_start)
            return {key: [_decode_record(body[a:b], position) for position, (a, b) in enumerate(elements)]}
    raise Unsplittable(f"no {' or '.join(envelopes)} list found")


def _decode_record(raw: bytes, position: int) -> object:
    """One record's bytes -> the record, or its `Quarantined` placeholder naming the field and the reason."""
    try:
        return _fast_decode(raw) if _fast_decode is not None else json.loads(raw)
    except (ValueError, RecursionError):
        pass
    try:
        record = json.loads(raw)
    except UnicodeDecodeError:
        return _quarantine(raw, position, "holds bytes that are not valid UTF-8", _undecodable_text)
    except RecursionError:
        return _quarantine(raw, position, "is JSON nested too deep to decode", _too_deep)
    except ValueError:
        return _quarantine(raw, position, "is not valid JSON", _invalid)
    return _checked(record, position)


def _undecodable_text(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
        return False
    except UnicodeDecodeError:
        return True


def _too_deep(raw: bytes) -> bool:
    try:
        json.loads(raw)
        return False
    except RecursionError:
        return True
    except ValueError:
        return False


def _invalid(raw: bytes) -> bool:
    try:
        json.loads(raw)
        return False
    except (ValueError, RecursionError):
        return True


def _quarantine(raw: bytes, position: int, reason: str, is_bad) -> Quarantined:
    """The placeholder of a bad record: the first member whose value `is_bad` names the field; its sourcedId when
    that member can be read."""
    field, sourced_id = "(record)", None
    try:
        members = _members(raw, _skip_space(raw, 0))[0] if raw.lstrip(_SPACE)[:1] == b"{" else []
    except Unsplittable:
        members = []
    for key_raw, a, b in members:
        key = _decode_key(key_raw)
        if key == "sourcedId":
            try:
                value = json.loads(raw[a:b])
                sourced_id = value if isinstance(value, str) and not _SURROGATE.search(value) else None
            except (ValueError, RecursionError):
                pass
        if field == "(record)" and is_bad(raw[a:b]):
            field = key or "(a key)"
    return Quarantined(position, field, reason, sourced_id)


def _decode_key(raw: bytes) -> str | None:
    try:
        key = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return key if isinstance(key, str) and not _SURROGATE.search(key) else None


def _skip_space(buf: bytes, i: int) -> int:
    while i < len(buf) and buf[i] in _SPACE:
        i += 1
    return i


def _elements(buf: bytes, start: int) -> tuple[list[tuple[int, int]], int]:
    """The (start, end) byte spans of the top-level elements of the array or object opening at `start` (object
    members as `"key": value`), and the index after its closing bracket. No recursion: any depth is fine."""
    spans, depth, pos, element_start = [], 0, start, start + 1
    while True:
        match = _TOKEN.search(buf, pos)
        if match is None:
            raise Unsplittable("the body ends before its brackets close")
        char, pos = buf[match.start()], match.end()
        if char == 0x22:  # "
            rest = _STRING_REST.match(buf, pos)
            if rest is None:
                raise Unsplittable("a string never ends")
            pos = rest.end()
        elif char in (0x5B, 0x7B):  # [ {
            depth += 1
        elif char in (0x5D, 0x7D):  # ] }
            depth -= 1
            if depth == 0:
                _add(spans, buf, element_start, match.start())
                return spans, pos
        elif depth == 1:  # a comma between two elements
            _add(spans, buf, element_start, match.start())
            element_start = pos


def _add(spans: list, buf: bytes, a: int, b: int) -> None:
    while a < b and buf[a] in _SPACE:
        a += 1
    while b > a and buf[b - 1] in _SPACE:
        b -= 1
    if a < b:
        spans.append((a, b))


def _members(buf: bytes, start: int) -> tuple[list[tuple[bytes, int, int]], int]:
    """(key bytes, value start, value end) of each member of the object opening at `start`."""
    spans, end = _elements(buf, start)
    members = []
    for a, b in spans:
        if buf[a] != 0x22:
            raise Unsplittable("an object member without a string key")
        rest = _STRING_REST.match(buf, a + 1)
        if rest is None:
            raise Unsplittable("a key never ends")
        colon = _skip_space(buf, rest.end())
        if colon >= b or buf[colon] != ord(":"):
            raise Unsplittable("an object member without ':'")
        members.append((buf[a:rest.end()], _skip_space(buf, colon + 1), b))
    return members, end
