"""The whole user path on a generated miniature MMHS150K: convert-mmh -> extract (random detector weights) ->
mmf_run mmh_pe -> mmf_predict, with 19-digit tweet ids intact at every step."""
import csv
import glob
import os

from mmf_pe import cli
from mmf_pe.data.lmdb_features import read_keys, read_record
from mmf_pe.testing.tiny_hmd import write_tokenizer
from mmf_pe.testing.tiny_mmh import make_tiny_mmhs150k
from mmf_pe_testing import metric_values, write_run_config
from tests.datasets.mmh.helpers import BASE, RUN_YAML, read_jsonl, run_mmf

REGIONS = 8
EXTRACT = ["--allow-random-weights", "--num-boxes", str(REGIONS), "--min-size", "64", "--max-size", "96",
           "--rpn-pre-nms-top-n", "50", "--rpn-post-nms-top-n", "20", "--num-workers", "0", "--no-progress"]
VISUAL_2048 = "model_config:\n  visual_bert_pe:\n    visual_embedding_dim: 2048\n"


def test_convert_extract_train_predict(tmp_path, monkeypatch, capsys):
    src = make_tiny_mmhs150k(str(tmp_path / "MMHS150K"), sizes={"train": 12, "val": 6, "test": 6})
    data_dir = str(tmp_path / "data")
    assert cli.main(["convert-mmh", "--src", str(tmp_path / "MMHS150K"), "--data-dir", data_dir]) == 0
    root = os.path.join(data_dir, "datasets", "mmh", "defaults")
    converted = {split: [r["id"] for r in read_jsonl(os.path.join(root, "annotations", f"{split}.jsonl"))]
                 for split in ("train", "val", "test")}
    assert converted == src["good_ids"]

    lmdb = os.path.join(root, "features", "regions.lmdb")
    assert cli.main(["extract", "--images", os.path.join(root, "images"), "--out", lmdb, *EXTRACT]) == 0
    all_ids = sorted(i for ids in converted.values() for i in ids)
    assert sorted(read_keys(lmdb)) == all_ids  # one entry per converted tweet, keyed by the exact id
    assert read_record(lmdb, all_ids[0])["features"].shape == (REGIONS, 2048)

    write_tokenizer(os.path.join(data_dir, "tokenizer"))
    config = write_run_config(tmp_path, "mmh_pe.yaml", RUN_YAML, VISUAL_2048)
    log = run_mmf([f"config={config}", *BASE], tmp_path / "train", data_dir, monkeypatch)
    assert len(metric_values(log, "val/mmh/roc_auc")) >= 2 and metric_values(log, "val/mmh/binary_f1")
    assert f"mmh train: {len(converted['train'])} tweets" in log

    run_mmf([f"config={config}", *BASE, "run_type=test", f"checkpoint.resume_file={tmp_path / 'train' / 'best.ckpt'}"],
            tmp_path / "predict", data_dir, monkeypatch, predict=True)
    [report] = glob.glob(str(tmp_path / "predict" / "**" / "reports" / "*.csv"), recursive=True)
    with open(report, newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(row["id"] for row in rows) == sorted(converted["test"])
