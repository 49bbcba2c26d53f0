"""A miniature MMHS150K tree (the Kaggle upload's layout) for tests and smoke runs, with the real data's traps.

19-digit tweet ids, tweet text with URLs, mentions, HTML entities and emoji, OCR files for some tweets, and known
bad input, recorded in the returned dict so tests can check each is reported:
    missing_from_gt   an id in splits/val_ids.txt that MMHS150K_GT.json lacks
    bad_labels        an id whose labels include 7
    missing_image     an id with no img_resized/<id>.jpg
    broken_images     zero-byte, truncated JPEG, not an image
    bad_ocr           an id whose img_txt/<id>.json is not JSON
    odd_images        valid but unusual: CMYK JPEG, grayscale, a GIF named .jpg, a 1-pixel-wide strip
"""
import io
import json
import os

import numpy as np

from mmf_pe.datasets.mmh.snowflake import snowflake_id
from mmf_pe.utils.io import atomic_write_bytes, atomic_write_text

FIRST_ID = 1_114_679_353_714_016_256  # a 19-digit tweet id; int32 and float64 both lose it
# Every 3-annotator pattern class: unanimous none / one vote / two votes (same or different class) / three votes.
PATTERNS = [[0, 0, 0], [1, 0, 0], [0, 2, 0], [1, 1, 0], [2, 3, 0], [0, 4, 4], [5, 5, 5], [1, 2, 3], [3, 3, 1]]


def make_tiny_mmhs150k(root, sizes=None, seed=0, image_size=64, times_ms=None):
    """Write the tree under `root` (MMHS150K_GT.json, img_resized/, img_txt/, splits/); returns a dict of facts.

    `times_ms`: posting times (ms since the epoch), one per tweet in split order (train, val, test): each tweet then
    gets a snowflake id encoding its time (facts["times"]: id -> ms). Default: increasing ids from FIRST_ID."""
    from PIL import Image

    sizes = sizes or {"train": 24, "val": 12, "test": 12}
    rng = np.random.default_rng(seed)
    for sub in ("img_resized", "img_txt", "splits"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    gt, split_ids, next_id, times = {}, {}, FIRST_ID, {}
    for split, size in sizes.items():
        split_ids[split] = []
        for index in range(size):
            if times_ms is not None:
                ms = int(times_ms[len(gt)])
                tweet_id = snowflake_id(ms, sequence=len(gt))
                times[tweet_id] = ms
                next_id = max(next_id, int(tweet_id) + 1)
            else:
                tweet_id = str(next_id)
                next_id += int(rng.integers(1, 10**6))
            pattern = PATTERNS[index % len(PATTERNS)]  # from index 3 on, a split has both classes
            gt[tweet_id] = {
                "tweet_url": f"https://twitter.com/user/status/{tweet_id}",
                "labels": list(pattern),
                "img_url": f"http://pbs.twimg.com/media/{tweet_id}.jpg",
                "tweet_text": f"@someone look at this &amp; that {'nasty' if sum(pattern) else 'nice'} \U0001F602 "
                              f"https://t.co/{tweet_id[-8:]}",
                "labels_str": ["NotHate" if v == 0 else "Hate" for v in pattern],
            }
            split_ids[split].append(tweet_id)
            color = (200, 30, 30) if sum(pattern) else (30, 30, 200)
            noise = rng.integers(0, 40, size=(image_size, image_size, 3))
            pixels = np.clip(np.array(color) + noise, 0, 255).astype(np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, format="JPEG")
            atomic_write_bytes(os.path.join(root, "img_resized", f"{tweet_id}.jpg"), buffer.getvalue())
            if len(gt) % 3 == 0:
                atomic_write_text(os.path.join(root, "img_txt", f"{tweet_id}.json"),
                                  json.dumps({"img_text": "WHEN YOU SEE IT\nlol"}))
    train, val, test = split_ids["train"], split_ids["val"], split_ids["test"]
    facts = {"root": root, "ids": split_ids, "gt": gt, "times": times}

    # Bad input, one kind per tweet.
    facts["missing_from_gt"] = missing = str(next_id + 7)
    val.insert(1, missing)
    facts["bad_labels"] = train[2]
    gt[train[2]]["labels"] = [0, 7, 1]
    facts["missing_image"] = train[4]
    os.unlink(os.path.join(root, "img_resized", f"{train[4]}.jpg"))
    facts["broken_images"] = {train[5]: b"", train[7]: None, test[1]: b"this is not an image\n"}
    for tweet_id, content in facts["broken_images"].items():
        path = os.path.join(root, "img_resized", f"{tweet_id}.jpg")
        if content is None:  # truncated JPEG: keep the header and half the data
            with open(path, "rb") as f:
                content = f.read()
            content = content[: len(content) // 2]
        atomic_write_bytes(path, content)
    facts["bad_ocr"] = test[3]
    atomic_write_text(os.path.join(root, "img_txt", f"{test[3]}.json"), "{\"img_text\": \"unterminated")
    facts["odd_images"] = _odd_images(root, [train[8], train[10], val[4], test[5]], image_size)

    atomic_write_text(os.path.join(root, "MMHS150K_GT.json"), json.dumps(gt))
    for split, ids in split_ids.items():
        atomic_write_text(os.path.join(root, "splits", f"{split}_ids.txt"), "\n".join(ids) + "\n")
    atomic_write_text(os.path.join(root, "hatespeech_keywords.txt"), "keyword\n")
    bad = {missing, facts["bad_labels"], facts["missing_image"], facts["bad_ocr"], *facts["broken_images"]}
    facts["good_ids"] = {split: [i for i in ids if i not in bad] for split, ids in split_ids.items()}
    return facts


def _odd_images(root, ids, size):
    """Valid images in unusual encodings, written over the given ids' JPEGs."""
    from PIL import Image

    rng = np.random.default_rng(1)
    rgb = Image.fromarray(rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8))
    variants = [("CMYK JPEG", rgb.convert("CMYK"), "JPEG"), ("grayscale JPEG", rgb.convert("L"), "JPEG"),
                ("GIF named .jpg", rgb.convert("P"), "GIF"), ("1-pixel-wide strip", rgb.resize((1, size)), "JPEG")]
    out = {}
    for tweet_id, (kind, image, fmt) in zip(ids, variants):
        buffer = io.BytesIO()
        image.save(buffer, format=fmt)
        atomic_write_bytes(os.path.join(root, "img_resized", f"{tweet_id}.jpg"), buffer.getvalue())
        out[tweet_id] = kind
    return out
