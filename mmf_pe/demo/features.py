"""The demo's region features: the project's extractor with random detector weights, then standardised.

Random-weight Faster R-CNN features have an arbitrary scale (norms ~1e3) and a large component shared by every
region; VisualBERT expects features of a detector trained on images. Each of the 2048 dimensions is therefore
z-scored with statistics of the train split's regions (dev/test statistics are never used), its std floored at a
tenth of the median std (dimensions dead in train would otherwise blow up: max |z| 9e5 before the floor, 32 after).
The text-only baseline gets one all-zero region per meme.
"""
import json
import os
import shutil

import numpy as np

from mmf_pe.data.lmdb_features import LMDBFeatureWriter, iter_records
from mmf_pe.tuners.provenance import STATE_FILE
from mmf_pe.utils.io import atomic_write_text


def extract_random_frcnn(data_paths, out, num_regions, image_size, progress=True, shard=None):
    """Features of every meme image (resumable: the extractor skips keys already written). 30 proposals per image
    are plenty for 10 regions on a 128 px meme and keep the box head cheap on a CPU. `shard=(i, n)`: every n-th
    image only (the detector's random weights are seeded, so shards agree; mmf_pe.extraction.merge_shards joins)."""
    from mmf_pe.extraction import extract_features

    summary = extract_features(
        os.path.join(data_paths["images"], "img"), out, detector="torchvision_frcnn", allow_random_weights=True,
        num_boxes=num_regions, min_size=image_size, max_size=image_size, num_workers=0, shard=shard,
        detector_options={"rpn_pre_nms_top_n": 100, "rpn_post_nms_top_n": 30}, progress=progress,
    )
    if summary.get("failed"):
        raise RuntimeError(f"feature extraction failed for {summary['failed']} image(s): see "
                           f"{summary['failures_report']}")
    return summary


STD_FLOOR = 0.1  # x the median per-dimension std of the train regions (see standardise)


def _train_keys(annotations_dir):
    with open(os.path.join(annotations_dir, "train.jsonl")) as f:
        return [os.path.splitext(os.path.basename(json.loads(line)["img"]))[0] for line in f if line.strip()]


def standardise(raw, out, annotations_dir):
    """Write `out` = `raw` with every feature dimension z-scored by train-split statistics. Idempotent.

    `out/extraction.json` is the raw extraction's record plus `settings.normalisation` (the mean and std used), so an
    adapter exported from a run on these features records how to make them from an image (`mmf_pe serve` applies
    the same z-scoring to its detector's features)."""
    done = os.path.join(out, ".standardised")
    state_path = os.path.join(out, STATE_FILE)
    if os.path.exists(done) and standardised_with(out) != STD_FLOOR:  # made by an earlier version: redo
        shutil.rmtree(out)
    if os.path.exists(done) and os.path.exists(state_path):
        return out
    rows = np.concatenate([r["features"] for _, r in iter_records(raw, _train_keys(annotations_dir))], axis=0)
    mean = rows.mean(axis=0, dtype=np.float64)
    # A floor of a tenth of the median std: random-weight detectors have dead (ReLU-zero) dimensions, whose train std
    # is 0; dividing by ~0 sent a dev/test region's 0.9 to 9e5 (measured) and made features noise-sensitive.
    std = rows.std(axis=0, dtype=np.float64)
    std = np.maximum(std, STD_FLOOR * np.median(std))
    if not os.path.exists(done):
        with LMDBFeatureWriter(out, map_size=1 << 32) as writer:
            for key, record in iter_records(raw):
                record["features"] = ((record["features"] - mean) / std).astype(np.float32)
                writer.put(key, record)
        atomic_write_text(done, json.dumps({"source": os.path.abspath(raw), "train_regions": int(rows.shape[0]),
                                            "std_floor": STD_FLOOR}) + "\n")
    with open(os.path.join(raw, STATE_FILE)) as f:
        state = json.load(f)
    state["settings"]["normalisation"] = {"mean": mean.tolist(), "std": std.tolist(),
                                          "statistics": "train split regions", "source": os.path.abspath(raw)}
    atomic_write_text(state_path, json.dumps(state) + "\n")
    return out


def standardised_with(out):
    """The std floor `out` was standardised with (None: not standardised, or before the floor existed)."""
    try:
        with open(os.path.join(out, ".standardised")) as f:
            return json.load(f).get("std_floor")
    except (OSError, ValueError):
        return None


def write_text_only(raw, out):
    """One all-zero 2048-d region per meme: the text-only baseline's 'image'. Idempotent."""
    done = os.path.join(out, ".complete")
    if os.path.exists(done):
        return out
    with LMDBFeatureWriter(out, map_size=1 << 30) as writer:
        for key, record in iter_records(raw):
            dim = record["features"].shape[1]
            writer.put(key, {
                "features": np.zeros((1, dim), dtype=np.float32), "bbox": np.zeros((1, 4), dtype=np.float32),
                "num_boxes": 1, "objects": np.zeros(1, dtype=np.int64), "cls_prob": np.ones((1, 1), np.float32),
                "image_width": record["image_width"], "image_height": record["image_height"],
            })
    atomic_write_text(done, "ok\n")
    return out
