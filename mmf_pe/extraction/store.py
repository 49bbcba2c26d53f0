"""The output side: MMF's feature LMDB plus a run-state file that makes interrupted runs recognisable and resumable.

`<out>.lmdb/extraction.json` (written atomically) holds the settings and `state`: "running" from the first write until
the last transaction is committed and synced, then "complete". Records and the `keys` entry are committed together
(LMDBFeatureWriter), so after a kill the database holds whole records only and `keys` matches them; a restart with the
same settings skips those keys. `<out>.lmdb/failures.tsv` lists images that could not be used (path, reason).
"""
import io
import json
import os
import time

import numpy as np

from mmf_pe.data.lmdb_features import LMDBFeatureWriter, load_record, open_readonly, read_keys
from mmf_pe.utils import lmdb_file
from mmf_pe.utils.io import atomic_write_bytes, atomic_write_text

STATE_FILE = "extraction.json"
FAILURES_FILE = "failures.tsv"
FORMAT = "mmf_pe.extraction/1"


def read_state(path):
    state_path = os.path.join(path, STATE_FILE)
    if not os.path.exists(state_path):
        return None
    with open(state_path) as f:
        return json.load(f)


def write_state(path, base, **fields):
    state = {**base, **fields, "format": FORMAT, "updated": time.strftime("%Y-%m-%dT%H:%M:%S")}
    atomic_write_text(os.path.join(path, STATE_FILE), json.dumps(state, indent=1, sort_keys=True) + "\n")
    return state


def open_output(path, settings, overwrite=False):
    """Open (or resume) the LMDB at `path` for these settings; returns (writer, state). Refuses to append to a
    database written with other settings or by another tool."""
    previous = read_state(path) if os.path.isdir(path) else None
    if previous is None and os.path.exists(os.path.join(path, "data.mdb")) and read_keys(path):
        raise ValueError(f"{path} is a feature LMDB not written by `mmf_pe extract` (no {STATE_FILE}); "
                         "choose a new --out")
    if previous is not None and not overwrite:
        differences = {k: (previous["settings"].get(k), v) for k, v in settings.items()
                       if previous["settings"].get(k) != v}
        if differences:
            lines = "\n".join(f"  {k}: existing {old!r} vs now {new!r}" for k, (old, new) in differences.items())
            raise ValueError(f"{path} was written with other settings; resuming would mix features:\n{lines}\n"
                             "use the same options, or another --out")
    if previous is not None and overwrite:
        _remove_lmdb(path)
        previous = None
    os.makedirs(path, exist_ok=True)
    writer = LMDBFeatureWriter(path, commit_every=1 << 30)  # the runner commits on its own cadence
    state = write_state(path, previous or {}, settings=settings, state="running")
    return writer, state


def finish(path, writer, base, **fields):
    writer.close()  # commit + sync before the state says complete
    return write_state(path, base, state="complete", **fields)


def write_failures(path, failures):
    text = "path\treason\n" + "".join(f"{p}\t{' '.join(str(r).split())}\n" for p, r in failures)
    atomic_write_text(os.path.join(path, FAILURES_FILE), text)
    return os.path.join(path, FAILURES_FILE)


def read_failures(path):
    report = os.path.join(path, FAILURES_FILE)
    if not os.path.exists(report):
        return []
    with open(report) as f:
        return [tuple(line.rstrip("\n").split("\t", 1)) for line in list(f)[1:] if line.strip()]


def write_npy(directory, key, record):
    """MMF's per-image .npy layout: `<key>.npy` (features) and `<key>_info.npy` (a pickled dict of the rest)."""
    info = {k: v for k, v in record.items() if k != "features"}
    for name, value in ((f"{key}.npy", record["features"]), (f"{key}_info.npy", np.array(info, dtype=object))):
        buffer = io.BytesIO()
        np.save(buffer, value, allow_pickle=True)
        atomic_write_bytes(os.path.join(directory, name), buffer.getvalue())


def _remove_lmdb(path):
    for name in ("data.mdb", "lock.mdb", STATE_FILE, FAILURES_FILE):
        if os.path.exists(os.path.join(path, name)):
            os.remove(os.path.join(path, name))


def merge(shard_paths, out, allow_incomplete=False, progress=True):
    """Join shard LMDBs into one (resumable; keys sorted). Every shard must be complete and share the settings."""
    from tqdm import tqdm

    states = []
    for path in shard_paths:
        state = read_state(path)
        if state is None:
            raise ValueError(f"{path}: no {STATE_FILE}; not a `mmf_pe extract` output")
        if state.get("state") != "complete" and not allow_incomplete:
            raise ValueError(f"{path} is an interrupted extraction (state {state.get('state')!r}); finish it by "
                             "running the same extract command again, or pass --allow-incomplete")
        states.append(state)
    settings = {k: v for k, v in states[0]["settings"].items() if k != "shard"}
    for path, state in zip(shard_paths[1:], states[1:]):
        other = {k: v for k, v in state["settings"].items() if k != "shard"}
        if other != settings:
            diff = sorted(k for k in set(other) | set(settings) if other.get(k) != settings.get(k))
            raise ValueError(f"{path} was extracted with other settings than {shard_paths[0]}: {diff}")
    owner = {}
    for path in shard_paths:
        for key in read_keys(path):
            if key in owner:
                raise ValueError(f"image key {key!r} is in both {owner[key]} and {path}")
            owner[key] = path
    writer, state = open_output(out, {**settings, "shard": None})
    failures = []
    try:
        envs = {p: open_readonly(p) for p in shard_paths}
        for n, key in enumerate(tqdm(sorted(owner), desc="merge", unit="img", disable=not progress), 1):
            if key in writer:
                continue
            with envs[owner[key]].begin() as txn:
                raw = lmdb_file.get(txn, key.encode("utf-8"), owner[key])
                if raw is None:
                    raise KeyError(f"{owner[key]}: key {key!r} is listed in 'keys' but has no record")
                writer.put(key, load_record(raw, owner[key], key))
            if n % 256 == 0:
                writer.commit()
        for env in envs.values():
            env.close()
        for path in shard_paths:
            failures += read_failures(path)
        write_failures(out, failures)
    except BaseException:
        writer.close()
        raise
    finish(out, writer, state, shards=list(map(str, shard_paths)), written=len(owner), failed=len(failures))
    return {"out": out, "written": len(owner), "failed": len(failures), "shards": len(shard_paths)}
