"""Compact per-entity state: a hash table of fixed-width numpy rows keyed by 64-bit hashes.

The fraud detectors remember one small record per code, user or device for up to a day,
and most of those entities are seen once. As Python objects such a record costs a few
hundred bytes (a dict slot, the id string, a tuple, its strings and numbers); here it is
one row of numpy columns, tens of bytes:

- the key is :func:`key_of` the entity id: xxh3-64 of its UTF-8, the same in every
  process and after a restart (never Python's salted ``hash()``). Two distinct ids
  share a key with probability about ``n² / 2⁶⁵``: 1 in 10 million for 2 million ids
  held at once. A collision merges two entities' evidence, nothing worse, and only in
  detectors that accept that (never the KPI dedup, which stays exact);
- numbers are ``int64``, ``float64`` or ``uint32`` columns, stored exactly;
- strings (ids shown in alert evidence) are UTF-8 in a fixed-width bytes column that
  widens to the longest value seen, up to :data:`MAX_WIDTH` bytes; a longer value (or
  one ending in NUL, which numpy would strip) is kept in a small dict beside the column.

The index is open addressing with linear probing over a power-of-two ``uint32`` array
(at most half full, so a lookup reads one or two slots) holding row numbers; rows are
dense, reused from a free list after deletes, and the row arrays are allocated
zero-filled so pages never written cost no memory. The detectors read and write single
fields through ``memoryview`` objects (:attr:`CompactTable.views`), much cheaper per
access than numpy scalar indexing, and expire or evict whole sets of rows with numpy.
A table pickles as its live rows only and rebuilds its index when loaded.

>>> t = CompactTable((("user", STR), ("t", "i8")))
>>> r = t.upsert("B00042-000317")
>>> r < 0  # a new row: its number is ~r
True
>>> r = ~r
>>> t.strs[0].set(r, "U1"); t.views[1][r] = 1_795_190_400_000
>>> t.upsert("B00042-000317") == r == t.find(key_of("B00042-000317"))
True
>>> t.strs[0].get(r), t.strs[0].eq(r, "U1"), t.views[1][r], len(t)
('U1', True, 1795190400000, 1)
>>> t.remove(r)
>>> t.find(key_of("B00042-000317")), len(t)
(-1, 0)
"""

from __future__ import annotations

import mmap
import weakref
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
from xxhash import xxh3_64_intdigest

STR = "str"
"""Column kind of a string column (any other kind is a numpy dtype: i8, f8, u4, ...)."""

MAX_WIDTH = 64
"""Widest string column in bytes; longer values go to the column's overflow dict."""

_EMPTY = 0
_DELETED = 1
_FIRST_ROW = 2  # rows 0 and 1 never hold data: an index slot holds its row number
_SPILLED = b"\xff"  # column value of a string kept in the overflow dict (never UTF-8)
_MIN_ROWS = 64
_MIN_SLOTS = 64
_CHUNK = 1 << 18  # rows per step of bulk work: bounds its temporary arrays to a few MB
_FAR = np.iinfo(np.int64).max
_MAPPED = 1 << 20  # arrays of at least this many bytes get pages of their own
_RESERVE = 1 << 26  # row capacity reserved up front when the table's cap is known


def zeros(n: int, dtype: Any) -> np.ndarray:
    """A zero-filled array; a large one in its own anonymous memory map.

    Such pages cost no memory until written, and go back to the system the moment the
    array is dropped. From the heap instead, a big array's pages may stay with the
    process after it is freed (glibc raises its mmap threshold after large frees), so
    a table that grows by copying would leave its old arrays' worth behind.
    """
    dt = np.dtype(dtype)
    size = n * dt.itemsize
    if size < _MAPPED:
        return np.zeros(n, dt)
    return np.frombuffer(mmap.mmap(-1, size), dt, n)


def key_of(s: str) -> int:
    """The table key of an id: xxh3-64 of its UTF-8 (never 0: rows with key 0 are free).

    >>> key_of("U00001234")
    1734907504858290280
    """
    try:
        b = s.encode()
    except UnicodeEncodeError:  # a lone surrogate: not from JSON, but keep it distinct
        b = s.encode("utf-8", "surrogatepass")
    return xxh3_64_intdigest(b) or 1


def _utf8(s: str) -> bytes:
    try:
        return s.encode()
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogatepass")


class StrColumn:
    """A string column: UTF-8 in a numpy bytes array, as wide as the longest value held
    (up to :data:`MAX_WIDTH`); longer values, and values ending in NUL (numpy strips
    trailing NULs), are kept in ``spill`` by row."""

    __slots__ = ("_table", "arr", "spill", "width")

    def __init__(self, rows: int, width: int, table: CompactTable) -> None:
        self.width = width
        self.arr: np.ndarray = zeros(rows, f"S{width}")
        self.spill: dict[int, str] = {}
        self._table = weakref.ref(table)  # for the rows in use, when widening

    def set(self, row: int, s: str) -> None:
        """Store ``s`` in ``row``."""
        try:
            b = s.encode()
        except UnicodeEncodeError:
            b = s.encode("utf-8", "surrogatepass")
        if self.spill:
            self.spill.pop(row, None)
        if 0 < len(b) <= self.width and b[-1]:
            self.arr[row] = b
        elif b and len(b) <= MAX_WIDTH and b[-1]:
            self._widen(len(b))
            self.arr[row] = b
        elif b:
            self.arr[row] = _SPILLED
            self.spill[row] = s
        else:
            self.arr[row] = b""

    def get(self, row: int) -> str:
        """The string in ``row``."""
        v = self.arr[row]
        if v == _SPILLED:
            return self.spill[row]
        return v.decode("utf-8", "surrogatepass")  # type: ignore[no-any-return]

    def eq(self, row: int, s: str) -> bool:
        """Whether ``row`` holds ``s``."""
        v = self.arr[row]
        try:
            if v == s.encode():
                return True
        except UnicodeEncodeError:
            if v == s.encode("utf-8", "surrogatepass"):
                return True
        return v == _SPILLED and self.spill.get(row) == s

    def _widen(self, need: int) -> None:
        self.width = min(MAX_WIDTH, -(-need // 8) * 8)
        table = self._table()
        end = self.arr.size if table is None else table._end
        arr = zeros(self.arr.size, f"S{self.width}")
        arr[:end] = self.arr[:end]  # rows never used stay untouched pages
        self.arr = arr

    def resize(self, rows: int, keep: int) -> None:
        """Room for ``rows`` rows, the first ``keep`` kept."""
        arr = zeros(rows, f"S{self.width}")
        arr[:keep] = self.arr[:keep]
        self.arr = arr


class CompactTable:
    """Rows of fixed-width columns found by a 64-bit key (:func:`key_of` of an id).

    ``columns`` names each column and its kind: :data:`STR` or a numpy dtype string.
    ``max_rows`` is a sizing hint (the most rows ever held at once): when given, the row
    arrays are reserved for that many rows at once (their pages are used only as rows
    are written); otherwise they grow by doubling.

    Event path: ``r = upsert(id)`` is the id's row, or ``~row`` of a row just added for
    it (then every field is for the caller to set). Numeric fields are
    ``views[i][row]`` (read and write; fetch ``views`` after ``upsert``, which may grow
    the arrays); strings are ``strs[i].set(row, s)``, ``.get(row)``, ``.eq(row, s)``.
    Bulk work uses :meth:`live` (row numbers), :meth:`column` and :meth:`remove_rows`.
    """

    def __init__(self, columns: Sequence[tuple[str, str]], *, max_rows: int = 0) -> None:
        self.spec = tuple((name, kind) for name, kind in columns)
        self.max_rows = max_rows
        self._setup(self._reserve(0), [8 if kind == STR else 0 for _, kind in self.spec])
        self._build_index(_MIN_SLOTS)

    def _reserve(self, n: int) -> int:
        """Row capacity for ``n`` rows: all ``max_rows`` at once when known (pages are
        only used as rows are written, and the arrays never have to be copied)."""
        if self.max_rows and self.max_rows + _FIRST_ROW <= _RESERVE:
            return max(n, self.max_rows) + _FIRST_ROW
        cap = _MIN_ROWS
        while cap < n + _FIRST_ROW:
            cap *= 2
        return cap

    def _setup(self, cap: int, widths: list[int]) -> None:
        self._cap = cap
        self.keys = zeros(cap, np.uint64)
        self._free = zeros(cap, np.uint32)
        self.strs: list[Any] = [
            StrColumn(cap, w, self) if kind == STR else None
            for (_, kind), w in zip(self.spec, widths, strict=True)
        ]
        self._nums: list[np.ndarray | None] = [
            None if kind == STR else zeros(cap, kind) for _, kind in self.spec
        ]
        self.size = 0
        """Live rows (also ``len(table)``)."""
        self._end = _FIRST_ROW  # rows below this have been used
        self._nfree = 0
        self._views()

    def _views(self) -> None:
        self._kv = self.keys.data
        self._fv = self._free.data
        self.views: list[Any] = [None if a is None else a.data for a in self._nums]

    def _grow_rows(self) -> None:
        cap = self._cap * 2
        if self.max_rows:
            cap = min(cap, self.max_rows + _FIRST_ROW)
        cap = max(cap, self._cap + 1)
        keep = self._end
        keys = zeros(cap, np.uint64)
        keys[:keep] = self.keys[:keep]
        self.keys = keys
        self._free = zeros(cap, np.uint32)  # only grown when no row is free
        for i, a in enumerate(self._nums):
            if a is not None:
                grown = zeros(cap, a.dtype)
                grown[:keep] = a[:keep]
                self._nums[i] = grown
        for col in self.strs:
            if col is not None:
                col.resize(cap, keep)
        self._cap = cap
        self._views()

    def _build_index(self, slots: int) -> None:
        """A fresh index of ``slots`` slots holding every live row.

        Rows are placed a chunk at a time, each chunk in rounds: every row not yet placed
        claims the next slot of its probe sequence if free, one claimant per slot wins,
        the others move on; so each row ends at or after its home slot with no free slot
        in between, as linear probing requires.
        """
        index = getattr(self, "_index", None)
        if index is not None and index.size == slots:
            index[:] = _EMPTY  # same size: cleared in place, no second array
        else:
            index = zeros(slots, np.uint32)
        mask = np.uint64(slots - 1)
        for start in range(_FIRST_ROW, self._end, _CHUNK):
            keys = self.keys[start : min(start + _CHUNK, self._end)]
            live = np.flatnonzero(keys)
            if not live.size:
                continue
            pos = (keys[live] & mask).astype(np.intp)
            rows = (live + start).astype(np.uint32)
            while rows.size:
                free = index[pos] == _EMPTY
                index[pos[free]] = rows[free]  # one claimant per slot sticks
                stay = index[pos] != rows
                rows = rows[stay]
                pos = (pos[stay] + 1) & (slots - 1)
        self._index = index
        self._iv = index.data
        self._mask = slots - 1
        self._deleted = 0
        self._max_live = slots // 2  # then the index grows
        self._max_used = slots * 5 // 8  # live and deleted slots: then it is rebuilt
        self._set_room()

    def _set_room(self) -> None:
        """Inserts left before the index must grow or be rebuilt (counted down by each
        insert, not raised by removes: :meth:`_reindex` recounts before rebuilding)."""
        self._room = min(self._max_live - self.size, self._max_used - self.size - self._deleted)

    def _reindex(self) -> None:
        """Grow the index when over half full, or clear its deleted marks."""
        self._set_room()
        if self._room >= 0:
            return
        slots = self._mask + 1
        while self.size * 2 > slots:
            slots *= 2
        self._build_index(slots)

    # -- event path ---------------------------------------------------------------------

    def __len__(self) -> int:
        return self.size

    def find(self, key: int) -> int:
        """The row of ``key``, or -1."""
        index = self._iv
        keys = self._kv
        mask = self._mask
        i = key & mask
        while True:
            r = index[i]
            if r == _EMPTY:
                return -1
            if r != _DELETED and keys[r] == key:
                return r  # type: ignore[no-any-return]
            i = (i + 1) & mask

    def upsert(self, s: str) -> int:
        """The row of id ``s``; or, when absent, ``~row`` of a new row for it."""
        try:
            key = xxh3_64_intdigest(s.encode()) or 1
        except UnicodeEncodeError:
            key = key_of(s)
        index = self._iv
        keys = self._kv
        mask = self._mask
        i = key & mask
        deleted = -1
        while True:
            r = index[i]
            if r == _EMPTY:
                break
            if r == _DELETED:
                if deleted < 0:
                    deleted = i
            elif keys[r] == key:
                return r  # type: ignore[no-any-return]
            i = (i + 1) & mask
        if deleted >= 0:
            i = deleted
            self._deleted -= 1
        if self._nfree:
            self._nfree -= 1
            r = self._fv[self._nfree]
        else:
            r = self._end
            if r == self._cap:
                self._grow_rows()
            self._end = r + 1
        index[i] = r
        self._kv[r] = key
        self.size += 1
        self._room -= 1
        if self._room < 0:
            self._reindex()
        return ~r  # type: ignore[no-any-return]

    def remove(self, row: int) -> None:
        """Delete one live row."""
        index = self._iv
        mask = self._mask
        i = self._kv[row] & mask
        while index[i] != row:
            i = (i + 1) & mask
        index[i] = _DELETED
        self._deleted += 1
        self._kv[row] = 0
        for col in self.strs:
            if col is not None and col.spill:
                col.spill.pop(row, None)
        self._fv[self._nfree] = row
        self._nfree += 1
        self.size -= 1

    # -- bulk ---------------------------------------------------------------------------

    def live(self) -> np.ndarray:
        """Row numbers of the live rows, ascending."""
        return np.flatnonzero(self.keys[: self._end])

    def live_mask(self) -> np.ndarray:
        """Which of the rows used so far are live (a bool array, one byte a row)."""
        return self.keys[: self._end] != 0

    def column(self, i: int) -> np.ndarray:
        """Numeric column ``i`` over every row used so far (a view)."""
        a = self._nums[i]
        assert a is not None, "a string column"
        return a[: self._end]

    def min_live(self, i: int) -> int | None:
        """The least value of numeric column ``i`` over live rows (None when empty)."""
        if not self.size:
            return None
        return int(np.min(self.column(i), where=self.live_mask(), initial=_FAR))

    def remove_where(self, which: np.ndarray) -> None:
        """Delete the live rows where ``which`` (over the rows used so far) is true."""
        if self.size and np.count_nonzero(which) == self.size:
            self.clear()
            return
        for start in range(0, which.size, _CHUNK):
            rows = np.flatnonzero(which[start : start + _CHUNK])
            if rows.size:
                self.remove_rows(rows + start)

    def clear(self) -> None:
        """Delete every row: rows are used from the first again (no free list)."""
        self.keys[: self._end] = 0
        for col in self.strs:
            if col is not None:
                col.spill.clear()
        self.size = 0
        self._end = _FIRST_ROW
        self._nfree = 0
        self._build_index(self._mask + 1)

    def remove_rows(self, rows: np.ndarray) -> None:
        """Delete these live rows (distinct row numbers)."""
        if not rows.size:
            return
        index = self._index
        slots = self._mask + 1
        pos = (self.keys[rows] & np.uint64(self._mask)).astype(np.intp)
        todo = rows.astype(np.uint32)
        while todo.size:
            hit = index[pos] == todo
            index[pos[hit]] = _DELETED
            miss = ~hit
            todo = todo[miss]
            pos = (pos[miss] + 1) & (slots - 1)
        self.keys[rows] = 0
        for col in self.strs:
            if col is not None and col.spill:
                for r in rows.tolist():
                    col.spill.pop(r, None)
        k = rows.size
        self._free[self._nfree : self._nfree + k] = rows
        self._nfree += k
        self.size -= k
        self._deleted += k
        self._reindex()

    # -- pickling -----------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        rows = self.live()
        spills: list[dict[int, str]] = []
        for col in self.strs:
            if col is None or not col.spill:
                spills.append({})
                continue
            old = sorted(col.spill)
            new = (np.searchsorted(rows, old) + _FIRST_ROW).tolist()
            spills.append({n: col.spill[r] for r, n in zip(old, new, strict=True)})
        return {
            "spec": self.spec,
            "max_rows": self.max_rows,
            "keys": self.keys[rows],
            "cols": [
                (a if col is None else col.arr)[rows]  # type: ignore[index]
                for a, col in zip(self._nums, self.strs, strict=True)
            ],
            "spills": spills,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.spec = state["spec"]
        self.max_rows = state["max_rows"]
        saved = state["cols"]
        n = len(state["keys"])
        cap = self._reserve(n)
        widths = [
            a.dtype.itemsize if kind == STR else 0
            for a, (_, kind) in zip(saved, self.spec, strict=True)
        ]
        self._setup(cap, widths)
        end = n + _FIRST_ROW
        self.keys[_FIRST_ROW:end] = state["keys"]
        for i, a in enumerate(saved):
            col = self.strs[i]
            if col is None:
                self._nums[i][_FIRST_ROW:end] = a  # type: ignore[index]
            else:
                col.arr[_FIRST_ROW:end] = a
                col.spill = dict(state["spills"][i])
        self.size = n
        self._end = end
        slots = _MIN_SLOTS
        while n * 2 > slots:
            slots *= 2
        self._build_index(slots)

    def nbytes(self) -> int:
        """Bytes of the arrays (allocated; pages never written cost no memory)."""
        return int(
            self.keys.nbytes
            + self._free.nbytes
            + self._index.nbytes
            + sum(a.nbytes for a in self._nums if a is not None)
            + sum(col.arr.nbytes for col in self.strs if col is not None)
        )


class Interner:
    """Small ids for a few distinct hashable values (a scan's region, channel and city).

    ``ids.get(value)`` is the id of a value seen before; :meth:`add` numbers a new one.
    Ids only grow; :meth:`compact` renumbers to the values still in use when the table
    of values has grown large.
    """

    def __init__(self) -> None:
        self.values: list[Any] = []
        self.ids: dict[Hashable, int] = {}

    def __len__(self) -> int:
        return len(self.values)

    def add(self, value: Hashable) -> int:
        """The id of ``value``, numbering it if new."""
        i = self.ids.get(value)
        if i is None:
            i = self.ids[value] = len(self.values)
            self.values.append(value)
        return i

    def compact(self, used: np.ndarray) -> np.ndarray:
        """Keep only the ids in ``used``; returns the array mapping old ids to new ones."""
        keep = np.unique(used).tolist()
        remap = np.zeros(len(self.values), np.uint32)
        remap[keep] = np.arange(len(keep), dtype=np.uint32)
        self.values = [self.values[i] for i in keep]
        self.ids = {v: i for i, v in enumerate(self.values)}
        return remap

    def __getstate__(self) -> list[Any]:
        return self.values

    def __setstate__(self, values: list[Any]) -> None:
        self.values = list(values)
        self.ids = {v: i for i, v in enumerate(self.values)}
