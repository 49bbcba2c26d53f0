"""In-memory embedding cache of a served frozen encoder: each image / text (keyed by a hash of the model input, as
the on-disk cache keys it) is encoded once while it stays among the recently used; bounded in bytes (LRU).

One cache serves every adapter of a base whose encoder is frozen (FC heads), so several heads scoring one meme, and
a re-posted meme, encode once. `view(settings)` prefixes the keys with what else decides the features (e.g.
CLIP's pooled vs projected embedding), so two heads wanting different features never share an entry.
"""
import hashlib
import json
import threading

from cachetools import LRUCache


def _nbytes(tensor):
    return tensor.numel() * tensor.element_size() + 64


class MemoryEmbeddingCache:
    def __init__(self, max_bytes):
        self.max_bytes = int(max_bytes)
        self.entries = LRUCache(maxsize=max(self.max_bytes, 1), getsizeof=_nbytes)
        self.lock = threading.Lock()
        self.hits = self.misses = 0

    def view(self, settings):
        prefix = hashlib.blake2b(json.dumps(settings, sort_keys=True, default=str).encode(), digest_size=8).hexdigest()
        return CacheView(self, prefix)

    def get_many(self, keys):
        with self.lock:
            found = [self.entries.get(key) for key in keys]
        hits = sum(v is not None for v in found)
        self.hits += hits
        self.misses += len(keys) - hits
        return found

    def put_many(self, keys, vectors):
        with self.lock:
            for key, vector in zip(keys, vectors):
                if _nbytes(vector) <= self.max_bytes:
                    self.entries[key] = vector.detach().clone()

    def describe(self):
        return {"max_bytes": self.max_bytes, "bytes": int(self.entries.currsize), "entries": len(self.entries),
                "hits": self.hits, "misses": self.misses}


class CacheView:
    """The on-disk EmbeddingCache's `lookup` interface over a shared memory cache, keys prefixed."""

    def __init__(self, cache, prefix):
        self.cache, self.prefix = cache, prefix
        self.path = f"memory:{prefix}"

    def lookup(self, keys, compute, device):
        """Stack of vectors for `keys`; the missing ones come from `compute(indices)` and are stored."""
        from mmf_pe.models.frozen_vl.cache import cached_lookup

        return cached_lookup(self.cache, [f"{self.prefix}|{k}" for k in keys], compute, device)

    def __len__(self):
        return len(self.cache.entries)
