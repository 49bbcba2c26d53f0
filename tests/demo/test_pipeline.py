"""The demo pipeline at test scale (smoke preset: 80 memes of 64 px, 4 random-detector regions, a tiny random BERT,
4 updates): real extraction, real `mmf_run` for FC / Full / PE / text-only, `mmf_pe evaluate`, the report."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from mmf_pe.data.lmdb_features import read_keys, read_record
from mmf_pe.demo import pipeline

MODES = {"fc", "full", "pe/paper", "text-only (full, no image)"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("demo"))
    settings = pipeline.settings_for("smoke")
    return out, settings, pipeline.run_demo(out, settings)


def test_report_files_and_table2_values(demo):
    out, settings, result = demo
    assert result["markdown"] == os.path.join(out, "report", "report.md")
    with open(result["markdown"]) as f:
        markdown = f.read()
    assert "random weights" in markdown and "tone(caption) XOR warmth(figure)" in markdown
    assert "Chance band" in markdown
    assert markdown.count("| hateful_memes |") == 4 * 3  # 4 runs x val, test_seen, test_unseen
    with open(result["summary"]) as f:
        summary = json.load(f)
    rows = {(r["mode"], r["split"]): r for r in summary["table2"]}
    assert {mode for mode, _ in rows} == MODES
    assert {split for _, split in rows} == {"val", "test_seen", "test_unseen"}
    for row in rows.values():
        for metric in ("roc_auc", "accuracy", "binary_f1"):
            assert 0.0 <= row[metric]["mean"] <= 1.0 and row[metric]["n"] == 1
    assert len(result["plots"]) >= 2
    for path in result["plots"]:
        with Image.open(path) as image:
            image.verify()
            assert image.format == "PNG"


def test_table1_counts_follow_the_modes(demo):
    _, _, result = demo
    with open(result["summary"]) as f:
        table1 = {row["mode"]: row for row in json.load(f)["table1"]}
    full, fc, pe = table1["full"], table1["fc"], table1["pe/paper"]
    assert full["trained"] == full["total"]
    assert 0 < fc["trained"] < pe["trained"] < full["trained"]
    assert pe["adapter"] > 0 and pe["total"] == full["total"] + pe["adapter"]


def test_confounders_in_summary_and_features(demo):
    out, settings, result = demo
    with open(result["summary"]) as f:
        confounders = json.load(f)["confounders"]
    for split, size in settings.splits.items():
        assert confounders[split]["memes"] == size
        assert confounders[split]["caption_lookup_accuracy"] == 0.5
        assert confounders[split]["pattern_lookup_accuracy"] == 0.5
    features = os.path.join(out, "data", "datasets", "hateful_memes", "defaults", "features")
    keys = read_keys(os.path.join(features, "detectron.lmdb"))
    assert len(keys) == sum(settings.splits.values())
    record = read_record(os.path.join(features, "detectron.lmdb"), keys[0])
    assert record["features"].shape == (settings.num_regions, 2048) and np.isfinite(record["features"]).all()
    text_only = read_record(os.path.join(features, "text_only.lmdb"), keys[0])["features"]
    assert text_only.shape == (1, 2048) and not text_only.any()


def test_rerun_reuses_everything(demo, capsys):
    out, settings, _ = demo
    logs = {name: os.path.getsize(os.path.join(out, "runs", name, "train.log")) for name in settings.runs}
    pipeline.run_demo(out, settings)
    printed = capsys.readouterr().out
    assert printed.count("finished earlier, reused") == len(settings.runs)
    assert "mmf_pe evaluate" not in printed
    assert logs == {name: os.path.getsize(os.path.join(out, "runs", name, "train.log")) for name in settings.runs}
