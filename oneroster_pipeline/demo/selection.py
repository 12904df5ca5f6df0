"""Which record indexes a collection request covers, in order, without materialising a large district."""

# An unfiltered, unsorted collection without holes is just `range(size)`. Anything else (a filter, a sort, removed
# students, a school's students) is scanned once into a compact `array` of indexes and cached per query and overlay
# version, so paging through a million filtered records costs one scan, not one per page.

from __future__ import annotations

import threading
from array import array
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter

from oneroster_pipeline.demo.district import District

_CACHE_ENTRIES = 8


@dataclass(frozen=True)
class Source:
    """A collection as indexes 0..size-1: `present(k)` is cheap, `get(k)` builds the full logical record."""

    name: str
    size: int
    get: Callable[[int], dict | None]
    present: Callable[[int], bool]
    dense: bool = True  # every index is present (no removed records, no membership test)
    small: bool = False  # a handful of records: scan every time, never cache


class Selector:
    """Computes and caches the ordered index list of (source, filter, sort) at the district's overlay version."""

    def __init__(self, district: District) -> None:
        self._district = district
        self._cache: OrderedDict[tuple, array] = OrderedDict()
        self._lock = threading.Lock()

    def select(self, source: Source, matches: Callable[[dict], bool] | None, filter_text: str | None,
               sort_key: Callable[[dict], object] | None, sort_name: str | None, descending: bool) -> Sequence[int]:
        if matches is None and sort_key is None and source.dense:
            return range(source.size)
        if source.small:
            return _scan(source, matches, sort_key, descending)
        key = (source.name, source.size, filter_text, sort_name, descending, self._district.version)
        with self._lock:  # one scan at a time: concurrent pages of the same query wait for the first scan
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            result = _scan(source, matches, sort_key, descending)
            self._cache[key] = result
            if len(self._cache) > _CACHE_ENTRIES:
                self._cache.popitem(last=False)
            return result


def _scan(source: Source, matches: Callable[[dict], bool] | None, sort_key: Callable[[dict], object] | None,
          descending: bool) -> array:
    if matches is None and sort_key is None:
        return array("q", (k for k in range(source.size) if source.present(k)))
    found = array("q")
    keyed: list[tuple[str, int]] = []
    for k in range(source.size):
        if not source.present(k):
            continue
        record = source.get(k)
        if record is None or (matches is not None and not matches(record)):
            continue
        if sort_key is None:
            found.append(k)
        else:
            keyed.append((str(sort_key(record)), k))
    if sort_key is None:
        return found
    keyed.sort(key=itemgetter(0), reverse=descending)
    return array("q", map(itemgetter(1), keyed))
