"""Plain helpers for the mmh tests (their session fixtures live in conftest.py beside this file)."""
import json
import os

import numpy as np

from mmf_pe.data.lmdb_features import LMDBFeatureWriter

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
