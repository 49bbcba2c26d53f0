"""Embedding cache for frozen encoders (clip_pe, frozen_vl): each image and text is encoded once per model and
preprocessing.

Layout: `<dir>/<fingerprint>/` holds an LMDB (`embeddings.lmdb`, one transaction per batch: atomic) and `meta.json`.
The fingerprint covers the encoder weights, the embedding kind and the preprocessing settings, so any change opens
a new, empty cache (old ones are never read). Entries are keyed by a hash of the model input itself (the pixel
tensor after preprocessing; the token ids up to the padding), so an edited image or text can never hit a stale entry.
"""
import hashlib
import json
import logging
import os

import numpy as np
import torch

from mmf_pe.utils.io import atomic_write_text

logger = logging.getLogger(__name__)
FORMAT_VERSION = 1
MAP_SIZE = 1 << 36  # 64 GiB of address space; the file grows with its contents


def cache_fingerprint(weights, embedding, preprocessing):
    payload = json.dumps({"version": FORMAT_VERSION, "weights": weights, "embedding": embedding,
                          "preprocessing": preprocessing}, sort_keys=True, default=str)
    return hashlib.blake2b(payload.encode(), digest_size=12).hexdigest()


def _digest(array):
    return hashlib.blake2b(array.tobytes(), digest_size=16).hexdigest()


def image_keys(pixel_values):
    pixels = pixel_values.detach().float().cpu().contiguous().numpy()
    return [f"i/{pixels.shape[1:]}/{_digest(p)}" for p in pixels]


def text_keys(input_ids, attention_mask):
    ids = input_ids.detach().cpu().numpy().astype(np.int64)
    if attention_mask is None:
        lengths = [ids.shape[1]] * len(ids)
    else:
        lengths = attention_mask.detach().cpu().sum(dim=1).tolist()
    return [f"t/{_digest(row[: int(n)])}" for row, n in zip(ids, lengths)]


class EmbeddingCache:
    def __init__(self, root, fingerprint, meta):
        import lmdb

        self.path = os.path.join(root, fingerprint)
        os.makedirs(self.path, exist_ok=True)
        meta_path = os.path.join(self.path, "meta.json")
        if not os.path.exists(meta_path):
            atomic_write_text(meta_path, json.dumps({"fingerprint": fingerprint, **meta}, indent=1, default=str))
        self.env = lmdb.open(os.path.join(self.path, "embeddings.lmdb"), map_size=MAP_SIZE, subdir=True,
                             max_readers=256, readahead=False)
        self.hits = self.misses = 0
        others = sorted(d for d in os.listdir(root) if d != fingerprint and os.path.isdir(os.path.join(root, d)))
        if others:
            logger.info(f"embedding cache: using {self.path}; caches of other models/preprocessing under {root}: "
                        f"{', '.join(others)} (not read; delete them to free space)")

    def __len__(self):
        return self.env.stat()["entries"]

    def get_many(self, keys):
        """Cached vectors (float32 tensors) or None per key."""
        found = []
        with self.env.begin(buffers=True) as txn:
            for key in keys:
                value = txn.get(key.encode())
                found.append(None if value is None else torch.from_numpy(np.frombuffer(value, np.float32).copy()))
        hits = sum(v is not None for v in found)
        self.hits += hits
        self.misses += len(keys) - hits
        return found

    def put_many(self, keys, vectors):
        vectors = vectors.detach().float().cpu().numpy()
        with self.env.begin(write=True) as txn:
            for key, vector in zip(keys, vectors):
                txn.put(key.encode(), vector.tobytes(), overwrite=False)

    def lookup(self, keys, compute, device):
        """Stack of vectors for `keys`; the missing ones come from `compute(indices)` and are stored."""
        return cached_lookup(self, keys, compute, device)

    def close(self):
        self.env.close()


def cached_lookup(cache, keys, compute, device):
    """Stack of vectors for `keys` from `cache` (its `get_many` / `put_many`); the missing ones come from
    `compute(indices)` and are stored. The same key twice in a batch (a repeated image) is computed once."""
    found = cache.get_many(keys)
    missing = [i for i, v in enumerate(found) if v is None]
    if missing:
        first = {}
        for i in missing:
            first.setdefault(keys[i], i)
        order = list(first.values())
        computed = compute(order).detach().float()
        cache.put_many([keys[i] for i in order], computed)
        by_key = dict(zip((keys[i] for i in order), computed))
        for i in missing:
            found[i] = by_key[keys[i]]
    return torch.stack([v.to(device) for v in found])
