"""Plain helpers for the data tests (their fixtures live in conftest.py beside this file)."""
import builtins
import pickle

import lmdb


class Hostile:
    """Unpickling this creates `marker` (what a malicious feature file could do with any callable)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


def hostile_record(marker):
    return pickle.dumps({"features": Hostile(marker), "num_boxes": 8})


def put_raw(path, values):
    env = lmdb.open(path, subdir=True, map_size=1 << 30)
    with env.begin(write=True) as txn:
        for key, value in values.items():
            txn.put(key.encode() if isinstance(key, str) else key, value)
    env.sync()
    env.close()
