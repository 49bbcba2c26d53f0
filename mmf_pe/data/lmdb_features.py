"""MMF's region-feature LMDB format, written and read without MMF.

Layout (what rc10's `LMDBFeatureReader` expects): one LMDB environment (a directory `<name>.lmdb`); each image is a
key `<image name without extension>` (utf-8) whose value is a pickled dict with at least `features` (N x D float32),
and usually `bbox` (N x 4), `num_boxes`, `objects`, `cls_prob`, `image_width`, `image_height`; the key `keys` holds the
pickled list of all image keys (bytes). Records and the `keys` list are committed in one transaction, so a killed
writer leaves a consistent database that a resumed run extends.

Every read goes through `mmf_pe.utils.safe_pickle` (records are plain data; anything else is refused with the path and
key) and `mmf_pe.utils.lmdb_file` (a truncated or corrupt file is named, never a bus error). Writing stays MMF's
exact format: `pickle.dumps` of the record dict.
"""
import os
import pickle

import lmdb

from mmf_pe.utils import lmdb_file, safe_pickle

KEYS_ENTRY = b"keys"
REQUIRED_FIELDS = ("features",)


class LMDBFeatureWriter:
    """Append records to a feature LMDB; `commit_every` records per transaction. Re-opening resumes."""

    def __init__(self, path, map_size=1 << 40, commit_every=64):
        self.path = path
        os.makedirs(path, exist_ok=True)
        if os.path.exists(os.path.join(path, "data.mdb")):
            lmdb_file.check_lmdb_file(path)
        self.env = lmdb.open(path, map_size=map_size, subdir=True, readonly=False, meminit=False, map_async=False)
        with self.env.begin(write=False) as txn:
            raw = lmdb_file.get(txn, KEYS_ENTRY, path)
        self.keys = load_keys(raw, path) if raw is not None else []
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


def load_keys(raw, path):
    """The `keys` entry: a pickled list of bytes (safely unpickled)."""
    keys = safe_pickle.loads(raw, where=f"{path} key 'keys'")
    if not isinstance(keys, (list, tuple)) or not all(isinstance(k, bytes) for k in keys):
        raise safe_pickle.UnsafeRecordError(f"{path} key 'keys': expected a list of bytes")
    return list(keys)


def load_record(raw, path, key):
    """One image's record (safely unpickled), as MMF's reader gets it."""
    record = safe_pickle.loads(raw, where=f"{path} key {_key_bytes(key).decode('utf-8', 'replace')!r}")
    if not isinstance(record, dict):
        raise safe_pickle.UnsafeRecordError(f"{path} key {key!r}: expected a dict record, got {type(record).__name__}")
    return record


def open_readonly(path):
    return lmdb_file.open_readonly(path)


def read_keys(path):
    env = open_readonly(path)
    try:
        with env.begin() as txn:
            raw = lmdb_file.get(txn, KEYS_ENTRY, path)
        return [k.decode("utf-8") for k in load_keys(raw, path)] if raw is not None else []
    finally:
        env.close()


def read_record(path, key):
    env = open_readonly(path)
    try:
        with env.begin() as txn:
            raw = lmdb_file.get(txn, _key_bytes(key), path)
        if raw is None:
            raise KeyError(f"{key!r} not in {path}")
        return load_record(raw, path, key)
    finally:
        env.close()


def iter_records(path, keys=None):
    """(key, record) for `keys` (default: every image, in the `keys` entry's order), in one read transaction."""
    env = open_readonly(path)
    try:
        with env.begin() as txn:
            if keys is None:
                raw = lmdb_file.get(txn, KEYS_ENTRY, path)
                keys = [k.decode("utf-8") for k in load_keys(raw, path)] if raw is not None else []
            for key in keys:
                raw = lmdb_file.get(txn, _key_bytes(key), path)
                if raw is None:
                    raise KeyError(f"{key!r} not in {path}")
                yield key, load_record(raw, path, key)
    finally:
        env.close()
