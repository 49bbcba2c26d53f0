"""Posting times from snowflake ids, and the time split (mmh_time_*.yaml) in a real MMF run."""
import csv
import json
import os
import shutil

import pytest

from mmf_pe.data.timeline import iso
from mmf_pe.datasets.mmh import convert
from mmf_pe.datasets.mmh.snowflake import SnowflakeError, snowflake_id, snowflake_ms
from mmf_pe_testing import metric_values, write_run_config
from tests.datasets.mmh.helpers import BASE, RUN_YAML, read_jsonl, run_mmf

SPLITS = ("train", "val", "test")


def test_snowflake_formula_and_refusals():
    assert snowflake_ms("1114679353714016256") == (1114679353714016256 >> 22) + 1288834974657
    assert snowflake_ms(snowflake_id(1_500_000_000_123, sequence=9)) == 1_500_000_000_123
    for bad, reason in (("20", "pre-2010"), ("29700859247", "pre-2010"), ("12a4", "decimal"), (str(2**63), "63 bits"),
                        (snowflake_id(2_500_000_000_000), "future")):
        with pytest.raises(SnowflakeError, match=reason):
            snowflake_ms(bad)


def test_converted_tweets_carry_their_known_posting_times(timed_mmh):
    times = timed_mmh["facts"]["times"]
    records = [r for split in SPLITS for r in read_jsonl(os.path.join(timed_mmh["root"], "annotations",
                                                                       f"{split}.jsonl"))]
    assert len(records) > 30
    for record in records:
        assert record["timestamp_ms"] == times[record["id"]]
        assert record["created_at"] == iso(times[record["id"]])
    assert "posting times (from the snowflake ids): train 2017-" in timed_mmh["stdout"]


def test_non_snowflake_ids_are_refused_by_line(timed_mmh, tmp_path):
    src = tmp_path / "MMHS150K"
    shutil.copytree(timed_mmh["facts"]["root"], src, symlinks=True)
    gt = json.loads((src / "MMHS150K_GT.json").read_text())
    first = next(iter(gt))
    gt["29700859247"] = gt[first]  # an old sequential id (2010): a tweet id, but no time in it
    (src / "MMHS150K_GT.json").write_text(json.dumps(gt))
    shutil.copy(src / "img_resized" / f"{first}.jpg", src / "img_resized" / "29700859247.jpg")
    lines = (src / "splits" / "val_ids.txt").read_text().splitlines()
    (src / "splits" / "val_ids.txt").write_text("\n".join(lines[:2] + ["29700859247"] + lines[2:]) + "\n")
    out = str(tmp_path / "out")
    assert convert.main(["--src", str(src), "--out", out, "--no-verify-images"]) == 0
    skipped = read_jsonl(os.path.join(out, "skipped.jsonl"))
    [entry] = [s for s in skipped if s["id"] == "29700859247"]
    assert entry["where"] == f"{src / 'splits' / 'val_ids.txt'}:3" and "not a snowflake" in entry["reason"]
    assert "29700859247" not in {r["id"] for r in read_jsonl(os.path.join(out, "annotations", "val.jsonl"))}
    assert convert.main(["--src", str(src), "--out", out, "--no-verify-images", "--strict"]) == 1


def test_time_split_run_never_trains_on_later_tweets_than_it_tests(timed_mmh, time_split_run):
    save_dir, log = time_split_run["save_dir"], time_split_run["log"]
    assert metric_values(log, "val/mmh/roc_auc")
    summary = json.loads((save_dir / "time_split.json").read_text())
    pool = [r for split in SPLITS for r in read_jsonl(os.path.join(timed_mmh["root"], "annotations",
                                                                    f"{split}.jsonl"))]
    counts = {name: summary["splits"][name]["count"] for name in SPLITS}
    assert sum(counts.values()) == len(pool) and counts["train"] == round(0.7 * len(pool))
    assert counts["val"] == round(0.8 * len(pool)) - counts["train"]
    train, val, test = (summary["splits"][name] for name in SPLITS)
    assert train["last_ms"] <= val["first_ms"] <= val["last_ms"] <= test["first_ms"]
    assert summary["boundaries"]["val/test"] == test["first_ms"]
    ordered = sorted(r["timestamp_ms"] for r in pool)
    assert train["last_ms"] == ordered[counts["train"] - 1] and test["first_ms"] == ordered[-counts["test"]]
    official_test = {r["timestamp_ms"] for r in read_jsonl(os.path.join(timed_mmh["root"], "annotations",
                                                                          "test.jsonl"))}
    assert min(official_test) < train["last_ms"]  # the official split is not by time: this one differs from it
    assert f"mmh train: time split of {len(pool)} samples" in log and f"test  {counts['test']:>7}  {test['first']}" \
        in log


def test_time_split_names_a_line_without_timestamp(timed_mmh, tmp_path, monkeypatch):
    data_dir = str(tmp_path / "data")
    shutil.copytree(timed_mmh["data_dir"], data_dir, symlinks=True)
    path = os.path.join(data_dir, "datasets", "mmh", "defaults", "annotations", "val.jsonl")
    records = read_jsonl(path)
    records[1].pop("timestamp_ms")
    with open(path, "w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in records))
    config = write_run_config(tmp_path, "mmh_time_fc.yaml", RUN_YAML)
    with pytest.raises(ValueError, match=r"val\.jsonl:2: no 'timestamp_ms' field.*convert-mmh"):
        run_mmf([f"config={config}", *BASE, "run_type=val"], tmp_path / "v", data_dir, monkeypatch)


def test_drift_of_a_time_split_run(timed_mmh, time_split_run, monkeypatch, capsys):
    """`mmf_pe drift <run dir>`: the run's best checkpoint on its (time-split) test split, by time window."""
    from sklearn.metrics import roc_auc_score

    from mmf_pe.experiments import drift
    from mmf_pe.reporting.plots import read_predictions

    monkeypatch.setenv("MMF_DATA_DIR", time_split_run["data_dir"])
    save_dir = time_split_run["save_dir"]
    assert drift.main([str(save_dir), "--windows", "2"]) == 0
    assert "| window | first | last | samples |" in capsys.readouterr().out
    summary = json.loads((save_dir / "time_split.json").read_text())["splits"]["test"]
    with open(save_dir / "drift" / "test" / "drift.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["samples"]) for r in rows] == [summary["count"] // 2, summary["count"] - summary["count"] // 2,
                                                 summary["count"]]
    assert rows[0]["first"] == summary["first"] and rows[1]["last"] == summary["last"]
    probabilities, targets = read_predictions(str(save_dir / "logs" / "predictions" / "test.csv"))
    overall = float(rows[2]["auroc"]) if rows[2]["auroc"] else None
    expected = roc_auc_score(targets, probabilities) if len(set(targets)) > 1 else None
    assert overall == pytest.approx(expected) if expected is not None else overall is None
    assert float(rows[2]["positive_rate"]) == pytest.approx(targets.mean())
