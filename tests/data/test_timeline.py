"""The time split and the time windows (mmf_pe.data.timeline) on rows with known times."""
import json

import pytest

from mmf_pe.data.timeline import TimelineError, read_timed_jsonl, split_by_time, time_windows


def _rows(times):
    return [(t, {"id": str(1000 + i)}, f"f:{i + 1}") for i, t in enumerate(times)]


def test_split_by_time_is_ordered_and_sized():
    times = [50, 10, 90, 30, 70, 20, 100, 40, 60, 80]  # shuffled
    parts, summary = split_by_time(_rows(times), {"train": 0.7, "val": 0.1, "test": 0.2})
    assert [len(parts[s]) for s in ("train", "val", "test")] == [7, 1, 2]
    assert [r[0] for r in parts["train"]] == [10, 20, 30, 40, 50, 60, 70]
    assert max(r[0] for r in parts["train"]) <= min(r[0] for r in parts["test"])
    assert summary["boundaries"] == {"train/val": 80, "val/test": 90}


def test_ties_are_broken_by_id_and_duplicates_dropped():
    rows = [(5, {"id": "30"}, "a:1"), (5, {"id": "4"}, "a:2"), (5, {"id": "200"}, "a:3"), (1, {"id": "4"}, "b:1")]
    parts, summary = split_by_time(rows, {"train": 0.34, "val": 0.0, "test": 0.66})
    assert summary["duplicates_dropped"] == 1  # id 4 again, from the second file
    assert [r[1]["id"] for r in parts["train"] + parts["test"]] == ["4", "30", "200"]


def test_bad_fractions_and_missing_timestamps_are_named(tmp_path):
    with pytest.raises(TimelineError, match="sum to 1"):
        split_by_time(_rows([1, 2]), {"train": 0.7, "val": 0.1, "test": 0.1})
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"id": "1", "timestamp_ms": 5}) + "\n\n" + json.dumps({"id": "2"}) + "\n")
    with pytest.raises(TimelineError, match=f"{path}:3: no 'timestamp_ms' field"):
        read_timed_jsonl(str(path))
    path.write_text(json.dumps({"id": "1", "timestamp_ms": "2019-01-01"}) + "\n")
    with pytest.raises(TimelineError, match=f"{path}:1: timestamp_ms '2019-01-01' is not a non-negative integer"):
        read_timed_jsonl(str(path))


def test_time_windows_are_consecutive_and_equal_sized():
    times = [9, 1, 8, 2, 7, 3, 6, 4, 5, 0]
    windows = time_windows(times, 3)
    assert [len(w) for w in windows] == [3, 4, 3]
    assert [[times[i] for i in w] for w in windows] == [[0, 1, 2], [3, 4, 5, 6], [7, 8, 9]]
    with pytest.raises(TimelineError, match="4 windows but only 3 samples"):
        time_windows([1, 2, 3], 4)
