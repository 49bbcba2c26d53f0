"""Real MMF runs on the converted miniature MMHS150K: training reports val/mmh metrics, predictions keep tweet ids,
missing data is named with the command that makes it."""
import glob
import json
import os
import shutil

import pytest

from mmf_pe.data.checks import DataCheckError
from mmf_pe_testing import metric_values, write_run_config
from tests.datasets.mmh.helpers import BASE, RUN_YAML, read_jsonl, run_mmf, write_features


def test_mmh_pe_trains_and_predicts_by_tweet_id(mmh_features, tmp_path, monkeypatch):
    config = write_run_config(tmp_path, "mmh_pe.yaml", RUN_YAML)
    log = run_mmf([f"config={config}", *BASE], tmp_path / "train", mmh_features["data_dir"], monkeypatch)
    assert len(metric_values(log, "val/mmh/roc_auc")) >= 2
    assert metric_values(log, "val/mmh/accuracy") and metric_values(log, "val/mmh/binary_f1")
    val = read_jsonl(os.path.join(mmh_features["root"], "annotations", "val.jsonl"))
    positive = 100.0 * sum(r["label"] for r in val) / len(val)
    assert f"mmh val: {len(val)} tweets, {positive:.1f} % positive (label rule: two_of_three)" in log

    checkpoint = str(tmp_path / "train" / "best.ckpt")
    run_mmf([f"config={config}", *BASE, "run_type=test", f"checkpoint.resume_file={checkpoint}",
             "evaluation.predict_file_format=json"], tmp_path / "predict", mmh_features["data_dir"], monkeypatch,
            predict=True)
    [report] = glob.glob(str(tmp_path / "predict" / "**" / "reports" / "*.json"), recursive=True)
    predictions = json.load(open(report))
    test_ids = [r["id"] for r in read_jsonl(os.path.join(mmh_features["root"], "annotations", "test.jsonl"))]
    assert sorted(p["id"] for p in predictions) == sorted(test_ids)  # exact 19-digit strings
    assert all(0.0 <= p["proba"] <= 1.0 and p["label"] in (0, 1) for p in predictions)


def test_label_rule_override_at_load_time(mmh_features, tmp_path, monkeypatch):
    config = write_run_config(tmp_path, "mmh_fc.yaml", RUN_YAML)
    log = run_mmf([f"config={config}", *BASE, "run_type=val", "dataset_config.mmh.label_rule=majority"],
                  tmp_path / "val", mmh_features["data_dir"], monkeypatch)
    assert "(label rule: majority); " in log and "tweets left out: the rule has no answer" in log
    assert metric_values(log, "val/mmh/roc_auc")


def test_missing_features_are_named(mini_mmh, tmp_path, monkeypatch):
    data_dir = str(tmp_path / "data")
    shutil.copytree(mini_mmh["data_dir"], data_dir, symlinks=True)
    root = os.path.join(data_dir, "datasets", "mmh", "defaults")
    config = write_run_config(tmp_path, "mmh_pe.yaml", RUN_YAML)
    with pytest.raises(DataCheckError) as error:  # no LMDB at all: the pre-flight check names file and command
        run_mmf([f"config={config}", *BASE], tmp_path / "a", data_dir, monkeypatch)
    assert "features/regions.lmdb" in str(error.value) and "mmf_pe extract" in str(error.value)

    train = [r["id"] for r in read_jsonl(os.path.join(root, "annotations", "train.jsonl"))]
    ids = [r["id"] for split in ("train", "val", "test")
           for r in read_jsonl(os.path.join(root, "annotations", f"{split}.jsonl"))]
    write_features(root, ids, skip={train[3]})
    with pytest.raises(DataCheckError) as error:  # one tweet without features: its id, not a KeyError mid-epoch
        run_mmf([f"config={config}", *BASE], tmp_path / "b", data_dir, monkeypatch)
    assert f"1 of {len(train)} tweets have no features" in str(error.value) and train[3] in str(error.value)

    os.unlink(os.path.join(root, "annotations", "val.jsonl"))
    with pytest.raises(DataCheckError) as error:
        run_mmf([f"config={config}", *BASE], tmp_path / "c", data_dir, monkeypatch)
    assert "annotations/val.jsonl" in str(error.value) and "mmf_pe convert-mmh" in str(error.value)

    write_features(root, ids)  # now complete: the next problem is an id that is not a tweet id (the pre-flight names
    with open(os.path.join(root, "annotations", "val.jsonl"), "w") as f:  # it before the builder's own check would)
        f.write(json.dumps({"id": "1.1e18", "img": "x.jpg", "text": "t", "label": 0, "labels": [0, 0, 0]}) + "\n")
    with pytest.raises(DataCheckError, match=r"val\.jsonl:1: id '1\.1e18' \(str\) is not an integer"):
        run_mmf([f"config={config}", *BASE], tmp_path / "d", data_dir, monkeypatch)
