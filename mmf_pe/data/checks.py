"""Pre-flight data checks: a missing or malformed file is reported with its path, line and the command that makes it,
before MMF fails deep inside a DataLoader (or tries to download).

Annotations (every line, always): blank lines, bytes that are not UTF-8, invalid JSON, missing keys, ids MMF cannot
store (not an integer or a string of digits, or outside the dataset config's `preflight_id_bits`: 32, as rc10's
builders store them, unless a dataset says 64), a text that is not a string, labels that are not the integers 0 or 1
(train and val must have one; test splits may lack them), an id twice in one split (an error naming both lines; in
two splits a warning). Errors stay short: the first few of a kind are listed and the rest counted.
Feature LMDBs: truncated or corrupt files (never a bus error), ids with no record (all ids: only the `keys` list is
read), and for a scan of records their width against the model's `visual_embedding_dim` and non-finite values.
The scan is `dataset_config.<name>.features_scan`: `sample` (default: up to 64 records per LMDB spread over the
ids, i.e. 64 x N x D x 4 bytes read, about 50 MB for 100 x 2048 regions), `full` (every id of the annotations:
the whole LMDB is read once per split) or `off`.
"""
import json
import logging
import os
import re
import warnings

import numpy as np

from mmf_pe.data.lmdb_features import load_keys, load_record
from mmf_pe.utils import lmdb_file, safe_pickle

logger = logging.getLogger(__name__)
SAMPLE_RECORDS = 64
LABELS = (0, 1)
INTEGER = re.compile(r"[+-]?[0-9]+")
MAX_LISTED = 20  # problems in one DataCheckError
SHOWN_PROBLEMS = 5  # per kind of problem: the first few are listed, the rest counted

# How to make a missing file when the dataset's config has no `data_hints` (each dataset's YAML says it for itself).
DEFAULT_HINTS = {
    "annotations": "Create it in MMF's jsonl layout (one JSON object per line).",
    "features": "Extract region features with `mmf_pe extract --images <images dir> --out <this path>`.",
}


class DataCheckError(FileNotFoundError):
    pass


def _fetch_hint(key):
    from mmf_pe.datasets.zoo import how_to_fetch

    return how_to_fetch(key)


def _paths(dataset_config, attribute, split):
    node = dataset_config.get(attribute, None)
    if node is None or node.get(split, None) is None:
        return []
    paths = node[split]
    paths = [paths] if isinstance(paths, str) else list(paths)
    return [os.path.join(dataset_config.data_dir, p) for entry in paths for p in entry.split(",")]


def id_problem(value, bits=32):
    """Why an annotation id cannot be MMF's sample id (None: it can). rc10's datasets do
    `torch.tensor(int(id), dtype=torch.int)` (32 bits; a dataset of its own may keep 64): a path-like, null or
    fractional id, or one out of range, fails there, inside a DataLoader worker, hours into a run."""
    limit = 2 ** (bits - 1)
    if isinstance(value, str) and INTEGER.fullmatch(value):
        value = int(value)
    if type(value) is not int:
        return f"id {_short(value)} ({type(value).__name__}) is not an integer (or a string of digits)"
    if not -limit <= value < limit:
        return f"id {value} does not fit the {bits}-bit integer MMF stores ids in (|id| < 2**{bits - 1})"
    return None


def _short(value, limit=60):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def check_jsonl(path, required=("id", "text"), label_required=False, id_bits=32):
    """Every line must be a UTF-8 JSON object with the required keys, an id MMF can store (`id_problem`), a string
    text and a 0/1 label (if any, or if required); names the file and line otherwise.
    Returns [(line number, record)]."""
    records = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataCheckError(f"{path}:{number}: not UTF-8 (byte {raw[exc.start]:#04x} at column "
                                     f"{exc.start + 1}); re-encode the file as UTF-8") from None
            if not line.strip():
                raise DataCheckError(f"{path}:{number}: blank line (MMF reads every line as a JSON object); delete it")
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataCheckError(f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(record, dict):
                raise DataCheckError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
            missing = [key for key in required if key not in record]
            if label_required and "label" not in record:
                missing.append("label")
            if missing:
                raise DataCheckError(f"{path}:{number}: record lacks {', '.join(missing)}")
            if "id" in required:
                problem = id_problem(record["id"], id_bits)
                if problem:
                    raise DataCheckError(f"{path}:{number}: {problem}")
            if "text" in required and not isinstance(record["text"], str):
                raise DataCheckError(f"{path}:{number}: text {_short(record['text'])} ({type(record['text']).__name__})"
                                     " is not a string")
            label = record.get("label", None)
            if label is not None and (type(label) is not int or label not in LABELS):
                raise DataCheckError(f"{path}:{number}: label {label!r} ({type(label).__name__}) is not one of the "
                                     "integers 0, 1")
            records.append((number, record))
    return records


def _duplicates(split_records, name, split):
    """Errors for an id twice in one split (both lines named): the first few, then a count."""
    problems, seen, repeats = [], {}, 0
    for path, number, record in split_records:
        key = str(record["id"])
        if key in seen:
            repeats += 1
            if repeats <= SHOWN_PROBLEMS:
                first_path, first_number = seen[key]
                problems.append(f"{name} {split}: id {_short(record['id'])} at {path}:{number} repeats "
                                f"{first_path}:{first_number} (it would be trained or scored twice); remove one")
        else:
            seen[key] = (path, number)
    if repeats > SHOWN_PROBLEMS:
        problems.append(f"{name} {split}: ... and {repeats - SHOWN_PROBLEMS} more repeated ids "
                        f"({repeats} lines repeat an earlier id)")
    return problems, seen


def feature_key(record, by="img"):
    """The LMDB key MMF looks up for an annotation record: the image name (`img/02345.png` -> 02345), or the id where
    the dataset's config says `preflight_feature_key: id` or the record has no image."""
    if by == "id" or "img" not in record:
        return str(record["id"])
    return str(record["img"]).split("/")[-1].split(".")[0]


def _lookup(key, keys):
    """rc10's LMDBFeatureReader rule: the name's trailing number if the LMDB has it, else the name (None: absent)."""
    try:
        numeric = str(int(key.split("_")[-1]))
        if numeric.encode() in keys:
            return numeric.encode()
    except ValueError:
        pass
    return key.encode() if key.encode() in keys else None


def check_features(name, split, path, records, feature_dim=None, scan="sample", check_ids=True, key_by="img"):
    """Problems of one feature LMDB for one split's records [(file, line, record)]."""
    if not path.endswith(".lmdb") or not os.path.exists(path):
        return []
    try:
        lmdb_file.check_lmdb_file(path)
        env = lmdb_file.open_readonly(path, readahead=False)
    except lmdb_file.LMDBFileError as error:
        return [f"{name} {split}: {error}"]
    problems = []
    try:
        with env.begin(buffers=True) as txn:
            raw = lmdb_file.get(txn, b"keys", path)
            if raw is None:
                return [f"{name} {split}: {path} has no 'keys' entry (not an MMF feature LMDB)"]
            keys = set(load_keys(raw, path))
            found, missing = [], []
            for file, number, record in records:
                key = _lookup(feature_key(record, key_by), keys)
                (found if key is not None else missing).append((file, number, record, key))
            if missing and check_ids:
                named = ", ".join(f"{feature_key(r, key_by)!r} ({f}:{n})" for f, n, r, _ in missing[:5])
                problems.append(f"{name} {split}: {len(missing)} of {len(records)} ids have no features in {path}, "
                                f"e.g. {named}")
            if scan == "off" or not found:
                return problems
            chosen = found if scan == "full" else [found[i] for i in
                                                   np.linspace(0, len(found) - 1, min(SAMPLE_RECORDS, len(found))
                                                               ).round().astype(int)]
            bad_width, bad_values, read = [], [], 0
            for file, number, record, key in chosen:
                raw = lmdb_file.get(txn, key, path)
                if raw is None:
                    problems.append(f"{name} {split}: {path} lists key {key!r} in 'keys' but has no record for it")
                    continue
                features = np.asarray(load_record(raw, path, key).get("features"))
                read += features.nbytes
                if features.ndim != 2 or (feature_dim and features.shape[1] != feature_dim):
                    bad_width.append(f"{key.decode()!r} {tuple(features.shape)}")
                elif not np.isfinite(features).all():
                    bad_values.append(f"{key.decode()!r} ({int((~np.isfinite(features)).sum())} values)")
            if bad_width:
                problems.append(f"{name} {split}: {path}: features of {len(bad_width)} records are not N x "
                                f"{feature_dim} (the model's visual_embedding_dim), e.g. {', '.join(bad_width[:5])}")
            if bad_values:
                problems.append(f"{name} {split}: {path}: non-finite (NaN/inf) features in {', '.join(bad_values[:5])}"
                                f"{' and more' if len(bad_values) > 5 else ''}")
            logger.info("%s %s: %s scan of %s: %d of %d records, %.1f MB read (features_scan: sample|full|off)",
                        name, split, scan, path, len(chosen), len(found), read / 2 ** 20)
    except (lmdb_file.LMDBFileError, safe_pickle.UnsafeRecordError) as error:
        problems.append(f"{name} {split}: {error}")
    finally:
        env.close()
    return problems


def data_hints(dataset_config):
    """{kind of file: how to make it}, from the dataset config's own `data_hints` over the generic ones."""
    own = dataset_config.get("data_hints", None) or {}
    return {**DEFAULT_HINTS, **{key: str(value) for key, value in own.items() if value}}


def check_dataset(name, dataset_config, splits=("train", "val", "test"), feature_dim=None):
    hints = data_hints(dataset_config)
    problems = []
    split_ids = {}
    id_bits = int(dataset_config.get("preflight_id_bits", 32))  # rc10's builders: int32
    scan = dataset_config.get("features_scan", "sample")
    scan = "off" if scan is False else str(scan)  # YAML 1.1 reads an unquoted off as false
    if scan not in ("sample", "full", "off"):
        problems.append(f"{name}: dataset_config.{name}.features_scan={scan!r}; use sample, full or off")
        scan = "sample"
    for split in splits:
        split_records, annotation_paths = [], _paths(dataset_config, "annotations", split)
        per_file = []
        for path in annotation_paths:
            if not os.path.isfile(path):
                problems.append(f"{name} {split}: missing annotations {path}\n  -> {hints['annotations']}")
                per_file.append([])
                continue
            try:
                records = [(path, n, r) for n, r in check_jsonl(path, label_required=split != "test", id_bits=id_bits)]
            except DataCheckError as exc:
                problems.append(f"{name} {split}: {exc}")
                records = []
            per_file.append(records)
            split_records += records
        duplicates, split_ids[split] = _duplicates(split_records, name, split)
        problems += duplicates
        if dataset_config.get("use_features", False):
            for index, path in enumerate(_paths(dataset_config, "features", split)):
                if not os.path.exists(path):
                    problems.append(f"{name} {split}: missing features {path}\n  -> {hints['features']}")
                elif _interrupted_extraction(path):
                    problems.append(
                        f"{name} {split}: features {path} are an interrupted `mmf_pe extract` run (state 'running')\n"
                        "  -> run the same `mmf_pe extract` command again; it resumes where it stopped")
                else:
                    records = per_file[index] if len(per_file) > 1 and index < len(per_file) else split_records
                    # a builder may name missing ids itself (`preflight_feature_ids: false`)
                    found = check_features(name, split, path, records, feature_dim, scan,
                                           check_ids=bool(dataset_config.get("preflight_feature_ids", True)),
                                           key_by=str(dataset_config.get("preflight_feature_key", "img")))
                    problems += [f"{p}\n  -> {hints['features']}" if " have no features " in p else p for p in found]
    if not dataset_config.get("time_split", None):  # a time split pools the same files for every split by design
        _warn_shared_ids(name, split_ids)
    tokenizer = _tokenizer_path(dataset_config)
    bert = _text_processor_type(dataset_config) in ("bert_tokenizer", "normalized_bert_tokenizer")
    if bert and tokenizer and os.sep in tokenizer and not os.path.isdir(tokenizer):
        problems.append(
            f"{name}: tokenizer directory {tokenizer} does not exist\n  -> put a BERT tokenizer there (vocab.txt, "
            "tokenizer_config.json), e.g. bert-base-uncased under $MMF_PE_WEIGHTS_DIR, or override "
            f"dataset_config.{name}.processors.text_processor.params.tokenizer_config.type. Nothing is downloaded."
        )
    return problems


def _warn_shared_ids(name, split_ids):
    splits = list(split_ids)
    for i, first in enumerate(splits):
        for second in splits[i + 1:]:
            shared = sorted(set(split_ids[first]) & set(split_ids[second]))
            if shared:
                path, number = split_ids[second][shared[0]]
                warnings.warn(f"{name}: {len(shared)} ids are in both {first} and {second}, e.g. {shared[0]!r} "
                              f"({path}:{number}); scores on {second} are then not on unseen samples")


def _interrupted_extraction(path):
    """`mmf_pe extract` marks its LMDB 'running' until every image is done (mmf_pe/extraction/store.py)."""
    state_file = os.path.join(path, "extraction.json")
    if not os.path.isfile(state_file):
        return False
    try:
        with open(state_file) as f:
            return json.load(f).get("state") == "running"
    except (OSError, ValueError):
        return False


def _text_processor_type(dataset_config):
    try:
        return str(dataset_config.processors.text_processor.type)
    except Exception:
        return None


def _tokenizer_path(dataset_config):
    try:
        return str(dataset_config.processors.text_processor.params.tokenizer_config.type)
    except Exception:
        return None


def check_config_data(config):
    """Check every dataset named in the run's config; raise one error listing all problems."""
    datasets = config.datasets
    names = [d.strip() for d in datasets.split(",")] if isinstance(datasets, str) else list(datasets or [])
    problems = []
    for name in names:
        dataset_config = config.dataset_config.get(name, None)
        if dataset_config is not None:
            problems += check_dataset(name, dataset_config, feature_dim=_feature_dim(config))
    if problems:
        shown = problems[:MAX_LISTED]
        more = f"\n... and {len(problems) - MAX_LISTED} more problems" if len(problems) > MAX_LISTED else ""
        raise DataCheckError("data is missing or malformed:\n" + "\n".join(shown) + more)


def _feature_dim(config):
    """The region-feature width the model expects (`model_config.<model>.visual_embedding_dim`), if it has one."""
    try:
        value = config.model_config.get(str(config.model), {}).get("visual_embedding_dim", None)
        return int(value) if value else None
    except Exception:
        return None


def check_pretrained_checkpoint(config):
    """`checkpoint.resume_file` must exist when set (MMF would fail later with a bare RuntimeError)."""
    path = config.checkpoint.get("resume_file", None)
    if path and not os.path.isfile(str(path)):
        from mmf_pe.datasets.zoo import mmf_cache_file

        cached = mmf_cache_file("visual_bert.pretrained.coco", (config.get("env", None) or {}).get("data_dir", None))
        if cached:
            raise DataCheckError(
                f"checkpoint.resume_file {path} does not exist, but MMF's cache already holds the COCO-pretrained "
                f"VisualBERT: {cached}.\n  -> `mmf_pe download visual_bert.pretrained.coco` links it to "
                f"$MMF_PE_WEIGHTS_DIR/visual_bert_coco/model.pth without downloading, or pass "
                f"checkpoint.resume_file={cached}")
        raise DataCheckError(
            f"checkpoint.resume_file {path} does not exist.\n  -> For the paper's recipe fetch MMF's COCO-pretrained "
            "VisualBERT to $MMF_PE_WEIGHTS_DIR/visual_bert_coco/model.pth: "
            f"{_fetch_hint('visual_bert.pretrained.coco')}"
            ", or start from BERT only with "
            "checkpoint.resume_file=None checkpoint.resume_pretrained=False (MMF's command line spells null as None). "
            "Nothing is downloaded."
        )
