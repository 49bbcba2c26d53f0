"""Two periods of labelled memes (jsonl + feature LMDB) over the serve tests' tiny served folder."""
import json
import os

import numpy as np

from mmf_pe.data.lmdb_features import LMDBFeatureWriter
from mmf_pe.datasets.mmh.snowflake import snowflake_id
from tests.serve.helpers import FEATURE_DIM

HOUR_MS = 3_600_000
OLD_START_MS = 1_500_000_000_000  # 2017-07-14
NEW_START_MS = OLD_START_MS + 60 * 24 * HOUR_MS  # two months later: a new event
WORDS = {("old", 1): ["vermin", "invaders", "filth"], ("old", 0): ["puppy", "sunset", "birthday"],
         ("new", 1): ["plague", "traitors", "swarm"], ("new", 0): ["garden", "holiday", "recipe"]}


def make_period(folder, name, period, count, seed, labels=None, start_ms=None, drop_timestamp_at=None):
    """<folder>/<name>.jsonl + <folder>/<name>.lmdb: `count` memes one hour apart, ids are snowflakes of their
    posting times. Positives carry the period's words and a visual signal in the period's own feature dims."""
    rng = np.random.default_rng(seed)
    start_ms = start_ms if start_ms is not None else (OLD_START_MS if period == "old" else NEW_START_MS)
    labels = list(labels) if labels is not None else [i % 2 for i in range(count)]
    offset = 0 if period == "old" else 256
    annotations, lmdb = os.path.join(folder, f"{name}.jsonl"), os.path.join(folder, f"{name}.lmdb")
    lines = []
    with LMDBFeatureWriter(lmdb) as writer:
        for index, label in enumerate(labels):
            timestamp = start_ms + index * HOUR_MS
            tweet_id = snowflake_id(timestamp, sequence=seed * 1000 + index)
            words = rng.choice(WORDS[(period, label)], size=3)
            features = rng.normal(scale=0.5, size=(int(rng.integers(3, 7)), FEATURE_DIM)).astype(np.float32)
            if label:
                features[:, offset:offset + 256] += 1.5
            writer.put(tweet_id, {"features": features, "bbox": np.zeros((len(features), 4), np.float32),
                                  "num_boxes": len(features), "image_width": 64, "image_height": 64})
            record = {"id": tweet_id, "text": " ".join(words), "label": int(label), "timestamp_ms": timestamp}
            if drop_timestamp_at == index:
                record.pop("timestamp_ms")
            lines.append(json.dumps(record) + "\n")
    with open(annotations, "w") as f:
        f.writelines(lines)
    return annotations, lmdb
