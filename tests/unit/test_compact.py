"""The detectors' compact hash table: lookups, inserts, deletes one by one and in bulk,
growth, string columns, pickling, and a property test against a plain dict."""

from __future__ import annotations

import doctest
import pickle
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import detectors.compact
from detectors.compact import MAX_WIDTH, STR, CompactTable, Interner, key_of

COLUMNS = (("name", STR), ("t", "i8"), ("x", "f8"), ("small", "u4"))


def put(table: CompactTable, key: str, name: str, t: int, x: float = 0.5) -> int:
    r = table.upsert(key)
    if r < 0:
        r = ~r
    table.strs[0].set(r, name)
    table.views[1][r] = t
    table.views[2][r] = x
    table.views[3][r] = t & 0xFFFF
    return r


def get(table: CompactTable, key: str) -> tuple[str, int, float] | None:
    r = table.find(key_of(key))
    if r < 0:
        return None
    return table.strs[0].get(r), table.views[1][r], table.views[2][r]


def test_doctests() -> None:
    assert doctest.testmod(detectors.compact).failed == 0


def test_key_is_stable_across_processes_and_never_zero() -> None:
    # xxh3-64 of the UTF-8: the same in every process (Python's str hash is salted)
    code = "import detectors.compact as c; print(c.key_of('U00001234'), c.key_of('码'))"
    runs = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        for _ in range(2)
    }
    assert runs == {f"{key_of('U00001234')} {key_of('码')}\n"}
    assert key_of("U00001234") == 1734907504858290280
    assert key_of("\ud800") != key_of("\udc00")  # lone surrogates hash too
    assert all(key_of(f"id{i}") > 0 for i in range(1000))


def test_insert_lookup_update_and_delete() -> None:
    table = CompactTable(COLUMNS)
    r = put(table, "U1", "Alice", 10, 39.9042)
    assert r >= 2 and len(table) == table.size == 1
    assert table.upsert("U1") == r  # found: no new row
    assert get(table, "U1") == ("Alice", 10, 39.9042)
    assert get(table, "U2") is None
    put(table, "U1", "Alicia", 11)
    assert get(table, "U1") == ("Alicia", 11, 0.5) and len(table) == 1
    table.remove(r)
    assert get(table, "U1") is None and len(table) == 0
    r2 = put(table, "U2", "Bob", 12)
    assert r2 == r  # the freed row is reused
    assert table.strs[0].eq(r2, "Bob") and not table.strs[0].eq(r2, "Bo")


def test_growth_keeps_every_row() -> None:
    table = CompactTable(COLUMNS, max_rows=5000)
    for i in range(5000):
        put(table, f"k{i}", f"n{i}", i, i / 3)
    assert len(table) == 5000
    assert table._cap == 5000 + 2  # grown by doubling, but never past the hint
    assert (table._mask + 1) >= 2 * 5000  # the index stays at most half full
    for i in range(5000):
        assert get(table, f"k{i}") == (f"n{i}", i, i / 3)


def test_bulk_removal_by_column_like_expiry() -> None:
    table = CompactTable(COLUMNS)
    for i in range(3000):
        put(table, f"k{i}", f"n{i}", i)
    t = table.column(1)
    table.remove_where(table.live_mask() & (t < 1000))
    assert len(table) == 2000
    assert table.min_live(1) == 1000
    assert all(get(table, f"k{i}") is None for i in range(1000))
    assert all(get(table, f"k{i}") == (f"n{i}", i, 0.5) for i in range(1000, 3000))
    for i in range(3000, 4000):  # reinsert after deletes: freed rows, deleted slots
        put(table, f"k{i}", f"n{i}", i)
    assert len(table) == 3000 and table._end <= 3000 + 2
    table.remove_where(table.live_mask())  # everything: cleared, rows used afresh
    assert len(table) == 0 and table.min_live(1) is None
    assert get(table, "k3500") is None
    assert put(table, "k1", "again", 1) == 2 and get(table, "k1") == ("again", 1, 0.5)


def test_string_columns_widen_spill_and_round_trip() -> None:
    table = CompactTable(COLUMNS)
    values = [
        "",
        "U1",
        "广州",  # UTF-8, 6 bytes
        "x" * 20,  # widens the column
        "y" * MAX_WIDTH,
        "z" * (MAX_WIDTH + 1),  # too wide: kept beside the column
        "ends in NUL\x00",  # numpy would strip it
        "\x00",
        "mid\x00dle",
        "\ud800",  # a lone surrogate
    ]
    rows = [put(table, f"k{i}", v, i) for i, v in enumerate(values)]
    for r, v in zip(rows, values, strict=True):
        assert table.strs[0].get(r) == v
        assert table.strs[0].eq(r, v)
    assert table.strs[0].width == MAX_WIDTH
    spilled = table.strs[0].spill
    assert set(spilled.values()) == {"z" * (MAX_WIDTH + 1), "ends in NUL\x00", "\x00"}
    # overwriting a spilled value with a short one, and removing rows, drops the spill
    table.strs[0].set(rows[5], "short")
    assert table.strs[0].get(rows[5]) == "short" and len(spilled) == 2
    table.remove(rows[6])
    table.remove_rows(np.array([rows[7]]))
    assert spilled == {}
    restored = pickle.loads(pickle.dumps(table))
    assert [get(restored, f"k{i}") for i in range(10)] == [get(table, f"k{i}") for i in range(10)]


def test_pickle_keeps_live_rows_only_and_continues() -> None:
    table = CompactTable(COLUMNS, max_rows=10_000)
    for i in range(10_000):
        put(table, f"k{i}", "n" * (i % 70), i)  # some too wide: spilled
    table.remove_where(table.live_mask() & (table.column(1) % 3 == 0))
    blob = pickle.dumps(table)
    restored = pickle.loads(blob)
    assert len(restored) == len(table) == 6666
    assert restored._end == 6666 + 2  # rows renumbered densely
    for i in range(10_000):
        assert get(restored, f"k{i}") == get(table, f"k{i}")
    put(restored, "new", "v", 1)
    assert get(restored, "new") == ("v", 1, 0.5) and len(restored) == 6667
    # a snapshot holds the live rows, not the allocated capacity
    assert len(blob) < 6666 * (8 + 8 + 8 + 4 + 64) + 100_000


def test_interner_ids_and_compaction() -> None:
    places = Interner()
    a = places.add(("CN-BJ", "offline", "北京"))
    b = places.add(("CN-GD", "offline", None))
    assert places.add(("CN-BJ", "offline", "北京")) == a != b
    assert places.ids.get(("CN-GD", "offline", None)) == b and len(places) == 2
    remap = places.compact(np.array([b, b]))
    assert places.values == [("CN-GD", "offline", None)] and remap[b] == 0
    restored = pickle.loads(pickle.dumps(places))
    assert restored.add(("CN-GD", "offline", None)) == 0


# -- property: the table behaves like a dict ----------------------------------------------

KEYS = [f"u{i}" for i in range(40)] + ["", "码-7", "x" * 90]

ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from(KEYS), st.text(max_size=70), st.integers(0, 99)),
        st.tuples(st.just("del"), st.sampled_from(KEYS)),
        st.tuples(st.just("expire"), st.integers(0, 99)),
        st.tuples(st.just("pickle")),
    ),
    max_size=300,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops)
def test_property_same_as_a_dict(ops: list[tuple]) -> None:
    table = CompactTable(COLUMNS)
    model: dict[str, tuple[str, int]] = {}
    for op in ops:
        if op[0] == "put":
            _, key, name, t = op
            r = table.upsert(key)
            assert (r < 0) == (key not in model)
            r = r if r >= 0 else ~r
            table.strs[0].set(r, name)
            table.views[1][r] = t
            model[key] = (name, t)
        elif op[0] == "del":
            r = table.find(key_of(op[1]))
            assert (r >= 0) == (op[1] in model)
            if r >= 0:
                table.remove(r)
                del model[op[1]]
        elif op[0] == "expire":
            table.remove_where(table.live_mask() & (table.column(1) < op[1]))
            model = {k: v for k, v in model.items() if v[1] >= op[1]}
        else:
            table = pickle.loads(pickle.dumps(table))
        assert len(table) == len(model)
    for key in KEYS:
        r = table.find(key_of(key))
        if key in model:
            assert (table.strs[0].get(r), table.views[1][r]) == model[key]
        else:
            assert r == -1
    assert table.min_live(1) == (min(v[1] for v in model.values()) if model else None)


def test_a_string_column_has_no_numeric_view() -> None:
    table = CompactTable(COLUMNS)
    with pytest.raises(AssertionError, match="string column"):
        table.column(0)


def test_one_long_probe_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """Worst case for linear probing: distinct keys that all start at the same slot."""
    monkeypatch.setattr(
        detectors.compact, "xxh3_64_intdigest", lambda b: int.from_bytes(b, "little") << 24
    )
    table = CompactTable(COLUMNS)
    for i in range(600):
        put(table, f"k{i}", f"n{i}", i)
    table.remove_where(table.live_mask() & (table.column(1) % 2 == 0))
    table.remove(table.find(key_of("k1")))
    for i in range(600, 700):  # inserts reuse deleted slots of the cluster
        put(table, f"k{i}", f"n{i}", i)
    assert len(table) == 399
    for i in range(700):
        assert get(table, f"k{i}") == (
            None if (i < 600 and i % 2 == 0) or i == 1 else (f"n{i}", i, 0.5)
        )
    restored = pickle.loads(pickle.dumps(table))
    assert [get(restored, f"k{i}") for i in range(700)] == [get(table, f"k{i}") for i in range(700)]


def test_repeat_buyer_history_is_exact_even_when_hashes_clash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from koxpulse.kpi import LastOrders

    monkeypatch.setattr(detectors.compact, "xxh3_64_intdigest", lambda b: 42 + len(b) % 2)
    history = LastOrders()
    model: dict[str, int] = {}
    for i in range(200):
        user, minute = f"u{i % 37}", i * 60_000
        assert history.get(user, -1) == model.get(user, -1)
        history.set(user, minute)
        model[user] = minute
        if i % 50 == 49:
            horizon = (i - 40) * 60_000
            history.purge(horizon)
            model = {u: m for u, m in model.items() if m >= horizon}
        assert len(history) == len(model)
    history = pickle.loads(pickle.dumps(history))
    assert {f"u{k}": history.get(f"u{k}", -1) for k in range(40)} == {
        f"u{k}": model.get(f"u{k}", -1) for k in range(40)
    }
