"""`mmf_pe drift` on an exported adapter: numbers on a fixture with a known shift, outputs, refusals."""
import csv
import json
import os

import pytest

from mmf_pe.experiments import drift
from tests.experiments.helpers import make_period
from tests.serve.helpers import OfflineScorer


def _shifted_labels(periods, tmp_path):
    """Memes whose labels follow the pe adapter's own ranking in the first half of the time line and invert it in
    the second: AUROC exactly 1 then exactly 0 (scores from a model built apart from the server's Engine)."""
    from mmf_pe.experiments.periods import load_examples

    annotations, lmdb = make_period(str(tmp_path), "probe", "old", 40, seed=5)
    examples = load_examples(annotations, lmdb)
    scorer = OfflineScorer(periods["base"], os.path.join(periods["served"], "pe"), periods["tokenizer"])
    scores = [scorer(e.text, e.features.numpy()) for e in examples]
    labels = []
    for half in (scores[:20], scores[20:]):
        ranked = sorted(half)
        cut = (ranked[9] + ranked[10]) / 2
        assert ranked[10] - ranked[9] > 1e-4  # a clear gap: the Engine's float differences cannot reorder
        labels.append([int(s > cut) for s in half])
    records = [json.loads(line) for line in open(annotations)]
    shifted = str(tmp_path / "shifted.jsonl")  # the same memes and features, labels replaced
    with open(shifted, "w") as f:
        for record, label in zip(records, labels[0] + [1 - v for v in labels[1]]):
            f.write(json.dumps(dict(record, label=label)) + "\n")
    return shifted, lmdb


def test_drift_numbers_on_a_known_shift(periods, tmp_path, capsys):
    annotations, lmdb = _shifted_labels(periods, tmp_path)
    out = str(tmp_path / "out")
    assert drift.main([os.path.join(periods["served"], "pe"), "--data", annotations, "--features", lmdb,
                       "--windows", "4", "--out", out]) == 0
    with open(os.path.join(out, "drift.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [r["window"] for r in rows] == ["1", "2", "3", "4", "all"]
    assert [float(r["auroc"]) for r in rows[:4]] == [1.0, 1.0, 0.0, 0.0]
    assert [int(r["samples"]) for r in rows] == [10, 10, 10, 10, 40]
    assert sum(int(r["positives"]) for r in rows[:4]) == int(rows[4]["positives"]) == 20
    assert rows[0]["first"] == "2017-07-14T02:40:00Z" and rows[3]["last"] == "2017-07-15T17:40:00Z"
    markdown = open(os.path.join(out, "drift.md")).read()
    assert "| 1 | 2017-07-14T02:40:00Z | 2017-07-14T11:40:00Z | 10 |" in markdown
    assert "| window | first | last | samples |" in capsys.readouterr().out
    assert open(os.path.join(out, "drift.png"), "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_drift_single_class_window_has_no_auroc(periods, tmp_path):
    annotations, lmdb = make_period(str(tmp_path), "one", "old", 8, seed=6, labels=[1, 1, 1, 1, 0, 1, 0, 1])
    rows, _ = drift.drift_of_adapter(os.path.join(periods["served"], "pe"), annotations, lmdb, 2)
    assert rows[0]["auroc"] is None and rows[0]["positive_rate"] == 1.0 and rows[1]["auroc"] is not None


def test_drift_refuses_annotations_without_timestamps(periods, tmp_path, capsys):
    annotations, lmdb = make_period(str(tmp_path), "undated", "old", 6, seed=7, drop_timestamp_at=3)
    assert drift.main([os.path.join(periods["served"], "pe"), "--data", annotations, "--features", lmdb,
                       "--windows", "2", "--out", str(tmp_path / "o")]) == 2
    assert f"{annotations}:4: no 'timestamp_ms' field" in capsys.readouterr().err
    # times from the ids instead: the ids are snowflakes, so this works ...
    assert drift.main([os.path.join(periods["served"], "pe"), "--data", annotations, "--features", lmdb,
                       "--windows", "2", "--out", str(tmp_path / "o"), "--time-from-id"]) == 0
    # ... until one is not
    lines = open(annotations).read().splitlines()
    record = json.loads(lines[1])
    record["id"] = "12345"
    lines[1] = json.dumps(record)
    open(annotations, "w").write("\n".join(lines) + "\n")
    assert drift.main([os.path.join(periods["served"], "pe"), "--data", annotations, "--features", lmdb,
                       "--windows", "2", "--out", str(tmp_path / "o"), "--time-from-id"]) == 2
    assert f"{annotations}:2: id 12345 is not a snowflake id" in capsys.readouterr().err


def test_drift_refuses_an_adapter_of_another_base(periods, tmp_path):
    annotations, lmdb = make_period(str(tmp_path), "p", "old", 6, seed=8)
    foreign = os.path.join(periods["spare"], "foreign")
    with pytest.raises(ValueError, match=f"{foreign}: trained on other base weights"):
        drift.drift_of_adapter(foreign, annotations, lmdb, 2, base=periods["served"])
