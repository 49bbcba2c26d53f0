"""Session data for the mmh tests: one miniature MMHS150K tree, converted once, with a feature LMDB written directly.

Imported by the test modules (not a conftest.py, so `from mmf_pe_testing import ...` keeps meaning tests/conftest.py).
Results are cached here so that every module shares one copy.
"""
import contextlib
import io
import json
import os
import shutil

import numpy as np
import pytest

from mmf_pe.data.lmdb_features import LMDBFeatureWriter
from mmf_pe.data.tiny_hmd import write_tokenizer
from mmf_pe.datasets.mmh import convert
from mmf_pe.datasets.mmh.tiny import make_tiny_mmhs150k

FEATURE_DIM, REGIONS = 32, 8
RUN_YAML = """dataset_config:
  mmh:
    max_features: 8
    processors:
      text_processor:
        params:
          max_seq_length: 16
          tokenizer_config:
            type: ${env.data_dir}/tokenizer
training:
  max_updates: 4
  log_interval: 2
  evaluation_interval: 2
  checkpoint_interval: 2
  early_stop:
    criteria: mmh/roc_auc
"""
BASE = ["model=visual_bert_pe", "dataset=mmh"]
_CACHE = {}


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def run_mmf(opts, save_dir, data_dir, monkeypatch, predict=False):
    """MMF's own `mmf_run` / `mmf_predict` entry (mmf_cli.run.run) in this process; returns train.log's text."""
    from mmf_cli.run import run

    from mmf_pe_testing import read_log

    monkeypatch.setenv("MMF_DATA_DIR", data_dir)
    run(list(opts) + [f"env.save_dir={save_dir}"] + (["evaluation.predict=true"] if predict else []),
        predict=predict)
    return read_log(save_dir)


def write_features(root, ids, skip=()):
    """Random 8 x 32 region features for every id (keyed by the id string), as `mmf_pe extract` would write."""
    rng = np.random.default_rng(0)
    path = os.path.join(root, "features", "regions.lmdb")
    with LMDBFeatureWriter(path) as writer:
        for tweet_id in ids:
            if tweet_id not in skip:
                writer.put(tweet_id, {"features": rng.normal(size=(REGIONS, FEATURE_DIM)).astype(np.float32),
                                      "bbox": np.zeros((REGIONS, 4), np.float32), "num_boxes": REGIONS,
                                      "image_width": 64, "image_height": 64})
    return path


@pytest.fixture(scope="session")
def mini_mmh(tmp_path_factory):
    """{"src": miniature MMHS150K facts, "data_dir": converted MMF data dir (+ tokenizer), "root", "stdout"}."""
    if "mini" not in _CACHE:
        base = tmp_path_factory.mktemp("mmh")
        facts = make_tiny_mmhs150k(str(base / "MMHS150K"))
        data_dir = str(base / "data")
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert convert.main(["--src", str(base), "--data-dir", data_dir, "--workers", "2"]) == 0
        write_tokenizer(os.path.join(data_dir, "tokenizer"))
        root = os.path.join(data_dir, "datasets", "mmh", "defaults")
        _CACHE["mini"] = {"src": facts, "data_dir": data_dir, "root": root, "stdout": out.getvalue(), "base": base}
    return _CACHE["mini"]


@pytest.fixture(scope="session")
def mmh_features(mini_mmh, tmp_path_factory):
    """A copy of the converted data with features/regions.lmdb for every converted tweet."""
    if "features" not in _CACHE:
        data_dir = str(tmp_path_factory.mktemp("mmh_features") / "data")
        shutil.copytree(mini_mmh["data_dir"], data_dir, symlinks=True)
        root = os.path.join(data_dir, "datasets", "mmh", "defaults")
        ids = [r["id"] for split in ("train", "val", "test")
               for r in read_jsonl(os.path.join(root, "annotations", f"{split}.jsonl"))]
        write_features(root, ids)
        _CACHE["features"] = {"data_dir": data_dir, "root": root}
    return _CACHE["features"]
