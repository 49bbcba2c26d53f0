"""Labelled examples of one period for offline scoring and adaptation: jsonl annotations + a feature LMDB.

One reader for `mmf_pe drift` (an exported adapter) and `mmf_pe adapt`: each line's text, label, posting time and
region features, checked on the way in. Every problem names the file and line (or the LMDB and the missing key):
unreadable JSON, a missing or non-0/1 label, a missing timestamp where one is needed, an id that is not a snowflake
when times come from ids, features absent from the LMDB.
"""
import hashlib
import json
import os
from dataclasses import dataclass

import numpy as np
import torch

from mmf_pe.data.checks import feature_key
from mmf_pe.data.timeline import TimelineError, record_time
from mmf_pe.utils.text_normalization import normalize_text


class PeriodDataError(ValueError):
    """Annotations or features that cannot be used (the message names the file and line)."""


@dataclass
class Example:
    id: str
    text: str
    label: int
    timestamp_ms: int
    features: torch.Tensor
    where: str


def _timestamp(record, where, time_source):
    if time_source == "field":
        try:
            return record_time(record, where)
        except TimelineError as error:
            raise PeriodDataError(str(error)) from None
    if time_source == "snowflake":
        from mmf_pe.datasets.mmh.snowflake import SnowflakeError, snowflake_ms

        try:
            return snowflake_ms(record.get("id", ""))
        except SnowflakeError as error:
            raise PeriodDataError(f"{where}: id {error}; --time-from-id needs Twitter snowflake ids") from None
    return record.get("timestamp_ms") if isinstance(record.get("timestamp_ms"), int) else None


def read_annotations(path, time_source=None):
    """[(record, "file:line", timestamp_ms or None)] of a jsonl file with labels 0/1.

    time_source: None (timestamps optional), "field" (`timestamp_ms` required) or "snowflake" (from the id)."""
    from mmf_pe.utils.io import jsonl_records

    rows = []
    for record, where in jsonl_records(path, PeriodDataError):
        if not isinstance(record, dict) or "id" not in record or not isinstance(record.get("text"), str):
            raise PeriodDataError(f"{where}: a line needs an 'id' and a 'text' string")
        label = record.get("label")
        if isinstance(label, bool) or label not in (0, 1):
            raise PeriodDataError(f"{where}: label {label!r} is not 0 or 1")
        rows.append((record, where, _timestamp(record, where, time_source)))
    return rows


def load_examples(annotations, features, time_source=None, max_features=100):
    """Examples of `annotations` (jsonl) with their features from `features` (an LMDB keyed like MMF's datasets:
    the image name's stem, else the id), at most `max_features` regions each as MMF's feature database keeps."""
    from mmf_pe.data.lmdb_features import iter_records, read_keys

    rows = read_annotations(annotations, time_source)
    try:
        keys = set(read_keys(features))
    except Exception as error:  # noqa: BLE001 - a missing or broken LMDB: say which
        raise PeriodDataError(f"{features}: not a readable feature LMDB ({error})") from None
    wanted = []
    for record, where, _ in rows:
        key = feature_key(record, "img")
        key = key if key in keys else str(record["id"])
        if key not in keys:
            raise PeriodDataError(f"{where}: no features for id {record['id']!r} in {features}")
        wanted.append(key)
    examples = []
    for (record, where, timestamp), (_, stored) in zip(rows, iter_records(features, wanted)):
        array = np.asarray(stored["features"], dtype=np.float32)[:max_features]
        if array.ndim != 2 or not np.isfinite(array).all():
            raise PeriodDataError(f"{where}: features of id {record['id']!r} in {features} are not a finite "
                                  "regions x dim array")
        examples.append(Example(str(record["id"]), record["text"], int(record["label"]), timestamp,
                                torch.from_numpy(array.copy()), where))
    return examples


def data_fingerprint(examples):
    """sha256 over what training or scoring saw: each example's id, label, text and feature bytes, in order."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(json.dumps([example.id, example.label, example.text]).encode())
        digest.update(example.features.numpy().tobytes())
    return digest.hexdigest()


def score_examples(engine, version, examples, batch_size=32):
    """P(hate) of each example under an adapter version: the server's own Engine, offline, in batches."""
    probabilities = []
    for start in range(0, len(examples), batch_size):
        batch = examples[start:start + batch_size]
        texts = [normalize_text(e.text, version.text_normalization) for e in batch]  # as the server scores them
        scores, _ = engine.score(version, texts, [e.features for e in batch])
        probabilities += scores
    return probabilities


def find_base(adapter_dir, base=None):
    """The served folder whose `base/` the adapter runs on: `base`, else the folder the adapter sits in."""
    from mmf_pe.serve.layout import BASE_DIR

    candidates = [base] if base else [os.path.dirname(os.path.abspath(adapter_dir.rstrip(os.sep)))]
    for folder in candidates:
        if os.path.isdir(os.path.join(folder, BASE_DIR)):
            return folder
    raise PeriodDataError(f"{candidates[0]}: no {BASE_DIR}/ folder (frozen base + tokenizer, `mmf_pe export-base`); "
                          "pass --base <served folder>")


def open_adapter(adapter_dir, base=None, engine=None):
    """(Engine, AdapterVersion, config bytes, weights bytes) of an exported adapter on a served folder's base.

    The serve Engine's own checks apply: an adapter trained on other base weights is refused, naming its folder."""
    from mmf_pe.serve.engine import AdapterError, Engine
    from mmf_pe.tuners.export import CONFIG_NAME, WEIGHTS_NAME

    files = []
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        path = os.path.join(adapter_dir, name)
        if not os.path.isfile(path):
            raise PeriodDataError(f"{path}: missing; an exported adapter folder has {CONFIG_NAME} and {WEIGHTS_NAME}")
        with open(path, "rb") as f:
            files.append(f.read())
    engine = engine or Engine(find_base(adapter_dir, base))
    try:
        version = engine.read_version(os.path.basename(os.path.abspath(adapter_dir)), files[0], files[1],
                                      adapter_dir)
    except AdapterError as error:
        raise PeriodDataError(f"{error} (base: {os.path.join(engine.folder, 'base')})") from None
    return engine, version, files[0], files[1]
