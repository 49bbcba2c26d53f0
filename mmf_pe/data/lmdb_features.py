"""MMF's region-feature LMDB format, written and read without MMF.

Layout (what rc10's `LMDBFeatureReader` expects): one LMDB environment (a directory `<name>.lmdb`); each image is a
key `<image name without extension>` (utf-8) whose value is a pickled dict with at least `features` (N x D float32),
and usually `bbox` (N x 4), `num_boxes`, `objects`, `cls_prob`, `image_width`, `image_height`; the key `keys` holds the
pickled list of all image keys (bytes). Records and the `keys` list are committed in one transaction, so a killed
writer leaves a consistent database that a resumed run extends.
"""
import os
import pickle

import lmdb

KEYS_ENTRY = b"keys"
REQUIRED_FIELDS = ("features",)


class LMDBFeatureWriter:
    """Append records to a feature LMDB; `commit_every` records per transaction. Re-opening resumes."""

    def __init__(self, path, map_size=1 << 40, commit_every=64):
        self.path = path
        os.makedirs(path, exist_ok=True)
        self.env = lmdb.open(path, map_size=map_size, subdir=True, readonly=False, meminit=False, map_async=False)
        with self.env.begin(write=False) as txn:
            raw = txn.get(KEYS_ENTRY)
        self.keys = pickle.loads(raw) if raw is not None else []
        self._known = set(self.keys)
        self.commit_every = commit_every
        self._pending = {}

    def __contains__(self, key):
        return _key_bytes(key) in self._known or _key_bytes(key) in self._pending

    def put(self, key, record):
        missing = [field for field in REQUIRED_FIELDS if field not in record]
        if missing:
            raise ValueError(f"feature record {key!r} lacks {missing}")
        self._pending[_key_bytes(key)] = pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)
        if len(self._pending) >= self.commit_every:
            self.commit()

    def commit(self):
        if not self._pending:
            return
        new_keys = [k for k in self._pending if k not in self._known]
        with self.env.begin(write=True) as txn:
            for key, value in self._pending.items():
                txn.put(key, value)
            txn.put(KEYS_ENTRY, pickle.dumps(self.keys + new_keys, protocol=pickle.HIGHEST_PROTOCOL))
        self.keys += new_keys
        self._known.update(new_keys)
        self._pending = {}

    def close(self):
        self.commit()
        self.env.sync()
        self.env.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _key_bytes(key):
    return key if isinstance(key, bytes) else str(key).encode("utf-8")


def read_keys(path):
    env = lmdb.open(path, subdir=os.path.isdir(path), readonly=True, lock=False)
    try:
        with env.begin() as txn:
            raw = txn.get(KEYS_ENTRY)
        return [k.decode("utf-8") for k in pickle.loads(raw)] if raw is not None else []
    finally:
        env.close()


def read_record(path, key):
    env = lmdb.open(path, subdir=os.path.isdir(path), readonly=True, lock=False)
    try:
        with env.begin() as txn:
            raw = txn.get(_key_bytes(key))
        if raw is None:
            raise KeyError(f"{key!r} not in {path}")
        return pickle.loads(raw)
    finally:
        env.close()


def iter_records(path, keys=None):
    """(key, record) for `keys` (default: every image, in the `keys` entry's order), in one read transaction."""
    env = lmdb.open(path, subdir=os.path.isdir(path), readonly=True, lock=False)
    try:
        with env.begin() as txn:
            if keys is None:
                raw = txn.get(KEYS_ENTRY)
                keys = [k.decode("utf-8") for k in pickle.loads(raw)] if raw is not None else []
            for key in keys:
                raw = txn.get(_key_bytes(key))
                if raw is None:
                    raise KeyError(f"{key!r} not in {path}")
                yield key, pickle.loads(raw)
    finally:
        env.close()
