"""End to end with torchvision's Faster R-CNN (random weights, tiny images): MMF's reader, failures, resume after
kill -9, shard + merge, storage options, and a real `visual_bert_pe` run on extracted features."""
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time

import lmdb
import numpy as np
import pytest

from mmf_pe.data.lmdb_features import read_keys, read_record
from mmf_pe.extraction import extract_features, merge_shards
from mmf_pe.extraction.cli import main as cli_main
from mmf_pe.extraction.store import read_state
from tests.extraction.helpers import TINY, bad_images, good_images, real_photos, write_images


def lmdb_contents(path):
    """(keys entry, every other key in the database)."""
    env = lmdb.open(path, subdir=True, readonly=True, lock=False)
    with env.begin() as txn:
        keys = [k.decode() for k in pickle.loads(txn.get(b"keys"))]
        stored = [k.decode() for k, _ in txn.cursor() if k != b"keys"]
    env.close()
    return keys, stored


def assert_consistent(path, expected_keys):
    keys, stored = lmdb_contents(path)
    assert len(keys) == len(set(keys)), "a key is listed twice"
    assert sorted(keys) == sorted(stored) == sorted(expected_keys)


def test_mmf_reader_failures_and_exit_code(tmp_path):
    from mmf.datasets.databases.readers.feature_readers import FeatureReader

    photos = real_photos(str(tmp_path / "images"))
    good = good_images(str(tmp_path / "images" / "modes"))
    bad = bad_images(str(tmp_path / "images" / "bad"))
    out = str(tmp_path / "features.lmdb")
    summary = extract_features(str(tmp_path / "images"), out, **TINY)
    expected = [os.path.splitext(os.path.basename(p))[0] for p in photos] + list(good)
    assert summary["written"] == len(expected) and summary["failed"] == len(bad)
    assert_consistent(out, expected)
    assert read_state(out)["state"] == "complete"
    with open(summary["failures_report"]) as f:
        report = dict(line.rstrip("\n").split("\t") for line in list(f)[1:])
    assert sorted(report) == sorted(bad)
    for path, reason in bad.items():
        assert reason in report[path]

    reader = FeatureReader(out, depth_first=False, max_features=100)
    for key in expected:
        features, info = reader.read(os.path.join(out, key + ".npy"))
        record = read_record(out, key)
        n = record["num_boxes"]
        assert features.shape == (100, 2048) and int(info["max_features"]) == n and 1 <= n <= 6
        assert np.array_equal(features[:n].numpy(), record["features"]) and not features[n:].any()
        assert record["bbox"].shape == (n, 4) and record["cls_prob"].shape == (n, 91)
        assert (record["bbox"][:, 2] <= record["image_width"] + 1e-3).all()
        assert record["objects"].shape == (n,)
    # the CLI: rerun resumes (nothing left but the failures, retried), exit status 1 because of them
    assert cli_main(["--images", str(tmp_path / "images"), "--out", out, "--allow-random-weights", "--min-size", "64",
                     "--max-size", "112", "--num-boxes", "6", "--rpn-pre-nms-top-n", "60", "--rpn-post-nms-top-n",
                     "30", "--no-progress", "--num-workers", "0"]) == 1
    assert_consistent(out, expected)


def test_refuses_to_mix_settings_or_foreign_databases(tmp_path):
    images = write_images(str(tmp_path / "img"), 1)
    out = str(tmp_path / "f.lmdb")
    extract_features(images, out, **TINY)
    with pytest.raises(ValueError, match=r"other settings.*\n.*max_boxes"):
        extract_features(images, out, **{**TINY, "num_boxes": 7})
    os.remove(os.path.join(out, "extraction.json"))
    with pytest.raises(ValueError, match="not written by `mmf_pe extract`"):
        extract_features(images, out, **TINY)
    with pytest.raises(ValueError, match="allow random weights explicitly"):
        extract_features(images, str(tmp_path / "g.lmdb"), detector="torchvision_frcnn")


def test_storage_options_and_npy_output(tmp_path):
    from mmf.datasets.databases.readers.feature_readers import FeatureReader

    images = write_images(str(tmp_path / "img"), 1)
    out, npy = str(tmp_path / "f16.lmdb"), str(tmp_path / "npy")
    extract_features(images, out, feature_dtype="float16", cls_prob="3", npy_dir=npy, **TINY)
    record = read_record(out, "img000")
    assert record["features"].dtype == np.float16 and "cls_prob" not in record
    assert record["cls_prob_topk"].shape == (record["num_boxes"], 3)
    assert (np.diff(record["cls_prob_topk"].astype(np.float32), axis=1) <= 0).all()
    features, info = FeatureReader(str(tmp_path / "npy"), depth_first=False, max_features=10).read(
        os.path.join(npy, "img000.npy"))
    assert features.dtype.is_floating_point and str(features.dtype) == "torch.float32"  # MMF casts float16 back
    assert np.array_equal(features[: record["num_boxes"]].numpy(), record["features"].astype(np.float32))
    assert info["image_width"] == 80 and info["num_boxes"] == record["num_boxes"]


@pytest.fixture(scope="module")
def six_images(tmp_path_factory):
    return write_images(str(tmp_path_factory.mktemp("six")), 6, size=(64, 72))


def test_shards_merge_to_the_single_run(six_images, tmp_path):
    whole = str(tmp_path / "whole.lmdb")
    extract_features(six_images, whole, **{**TINY, "num_workers": 2})  # decoding in worker processes
    shards = [str(tmp_path / f"shard{i}.lmdb") for i in range(2)]
    for i, shard in enumerate(shards):
        summary = extract_features(six_images, shard, shard=f"{i}/2", **TINY)
        assert summary["images"] == 3
    merged = str(tmp_path / "merged.lmdb")
    assert merge_shards(shards, merged, progress=False)["written"] == 6
    assert read_state(merged)["state"] == "complete"
    assert sorted(read_keys(merged)) == sorted(read_keys(whole))
    for key in read_keys(whole):
        a, b = read_record(whole, key), read_record(merged, key)
        assert a.keys() == b.keys()
        for field in a:
            assert np.array_equal(a[field], b[field]), (key, field)
    with pytest.raises(ValueError, match="is in both"):
        merge_shards([shards[0], shards[0]], str(tmp_path / "dup.lmdb"), progress=False)


def test_resume_after_kill_9(six_images, tmp_path):
    """The run pauses after 2 committed images (runner.PAUSE_ENV, a test hook) and is SIGKILLed there: always
    mid-run, however fast the machine."""
    from mmf_pe.extraction.runner import PAUSE_ENV

    out = str(tmp_path / "killed.lmdb")
    command = [sys.executable, "-m", "mmf_pe.cli", "extract", "--images", *six_images, "--out", out,
               "--allow-random-weights", "--min-size", "160", "--max-size", "200", "--num-boxes", "6",
               "--rpn-pre-nms-top-n", "60", "--rpn-post-nms-top-n", "30", "--commit-every", "1", "--no-progress",
               "--num-workers", "0"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.Popen(command, env=dict(env, **{PAUSE_ENV: "2"}), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    try:
        while time.time() < deadline and process.poll() is None:
            if os.path.exists(os.path.join(out, "data.mdb")) and len(read_keys(out)) >= 2:
                break
            time.sleep(0.05)
        assert process.poll() is None, f"the paused extraction exited ({process.returncode})"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    done = read_keys(out)
    assert len(done) == 2 and read_state(out)["state"] == "running"  # recognisably interrupted
    keys, stored = lmdb_contents(out)
    assert sorted(keys) == sorted(stored)  # no half-written entry
    with pytest.raises(ValueError, match="interrupted extraction"):
        merge_shards([out], str(tmp_path / "m.lmdb"), progress=False)
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f'"already_done": {len(done)}' in result.stdout
    assert_consistent(out, [f"img{i:03d}" for i in range(6)])
    assert read_state(out)["state"] == "complete"


def test_visual_bert_pe_trains_on_extracted_features(tmp_path, monkeypatch):
    """The real MMF run (rc10 dataset + reader + visual_bert_pe at visual_embedding_dim 2048) on our LMDB."""
    import json

    from PIL import Image

    from mmf_pe.testing.tiny_hmd import make_tiny_hmd
    from mmf_pe_testing import metric_values, read_log, write_run_config
    from tests.extraction.helpers import random_rgb

    paths = make_tiny_hmd(str(tmp_path / "data"), splits={"train": 4, "dev_seen": 2, "test_seen": 2})
    image_dir = os.path.join(paths["root"], "img")
    os.makedirs(image_dir)
    annotations = os.path.join(paths["root"], "annotations")
    for split in ("train", "dev_seen", "test_seen"):
        for line in open(os.path.join(annotations, f"{split}.jsonl")):
            name = json.loads(line)["img"]
            Image.fromarray(random_rgb(48, 64, seed=len(name))).save(os.path.join(paths["root"], name))
    shutil.rmtree(paths["features"])
    summary = extract_features([os.path.join(annotations, f"{s}.jsonl") for s in ("train", "dev_seen", "test_seen")],
                               paths["features"], **{**TINY, "num_boxes": 4})
    assert summary["written"] == 8 and summary["failed"] == 0
    monkeypatch.setenv("MMF_DATA_DIR", paths["data_dir"])
    config = write_run_config(tmp_path, "hmd_pe.yaml", "model_config:\n  visual_bert_pe:\n"
                              "    visual_embedding_dim: 2048\n")
    from mmf_cli.run import run as mmf_run

    save_dir = str(tmp_path / "run")
    mmf_run([f"config={config}", "model=visual_bert_pe", "dataset=hateful_memes", f"env.save_dir={save_dir}",
             "training.max_updates=2", "training.evaluation_interval=2", "training.checkpoint_interval=2",
             "training.batch_size=4", "dataset_config.hateful_memes.max_features=4"])
    losses = metric_values(read_log(save_dir), "val/hateful_memes/cross_entropy")
    assert losses and all(np.isfinite(losses))
