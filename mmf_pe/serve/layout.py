"""The served folder: `base/` (frozen weights + tokenizer, loaded once) beside one folder per adapter.

    <folder>/base/base_config.json          {"format": "mmf_pe.base/1", "model_config": {...}, "max_seq_length": ..}
    <folder>/base/base_model.safetensors    every base weight under its plain VisualBERT name
    <folder>/base/tokenizer/                vocab.txt + tokenizer_config.json (a local BERT tokenizer)
    <folder>/<name>/adapter_config.json     an `mmf_pe export-adapter` directory (or a link to one)
    <folder>/<name>/adapter_model.safetensors

Admin uploads are written as `<folder>/.versions/<name>.<fingerprint>/` and published by atomically replacing the
symlink `<folder>/<name>`, so a replica watching the folder never sees half an adapter.
"""
import hashlib
import json
import os
import re
import shutil
import time
import uuid

from mmf_pe.tuners.export import CONFIG_NAME, WEIGHTS_NAME
from mmf_pe.utils.io import atomic_write_bytes

BASE_DIR = "base"
BASE_FORMAT = "mmf_pe.base/1"
BASE_CONFIG = "base_config.json"
BASE_WEIGHTS = "base_model.safetensors"
VERSIONS_DIR = ".versions"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # used with fullmatch: no trailing newline
# base/ and more bases under bases/<name>/ (mmf_pe.serve.engine), and the folder's own files (the demo writes
# index.json beside the adapters): never adapter names
RESERVED_NAMES = (BASE_DIR, "bases", "index.json")
RESERVED_SUFFIXES = (".json", ".tmp", ".link")


def is_name(name):
    return isinstance(name, str) and NAME_PATTERN.fullmatch(name) is not None and name not in RESERVED_NAMES \
        and not name.lower().endswith(RESERVED_SUFFIXES)


def check_name(name):
    if not is_name(name):
        raise ValueError(f"adapter name {name!r}: use 1-64 letters, digits, '_', '.', '-' (not starting with '.' "
                         f"or '_', not {' or '.join(map(repr, RESERVED_NAMES))}, not ending in "
                         f"{', '.join(RESERVED_SUFFIXES)})")
    return name


def save_base(model, folder, tokenizer_dir, max_seq_length=128, default_adapter=None):
    """Write `<folder>/base/` from a built model with its base weights loaded (its family's `export_base`)."""
    from mmf_pe.models.contract import family_of_model

    return family_of_model(model).export_base(model, None, os.path.join(folder, BASE_DIR), default_adapter,
                                              tokenizer_dir=tokenizer_dir, max_seq_length=max_seq_length)


def read_base_config(folder):
    path = os.path.join(folder, BASE_DIR, BASE_CONFIG)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: missing; the served folder needs {BASE_DIR}/{BASE_CONFIG}, "
                                f"{BASE_DIR}/{BASE_WEIGHTS} and {BASE_DIR}/tokenizer/ (see docs/serving.md)")
    config = read_json(path)
    if config.get("format") != BASE_FORMAT:
        raise ValueError(f"{path}: format {config.get('format')!r} is not {BASE_FORMAT!r}")
    return config


def read_json(path):
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: line {error.lineno}: not valid JSON ({error.msg})") from None


def adapter_names(folder):
    """Names of the adapter folders (complete ones: both files present), sorted."""
    names = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if is_name(name) and os.path.isfile(os.path.join(path, CONFIG_NAME)) \
                and os.path.isfile(os.path.join(path, WEIGHTS_NAME)):
            names.append(name)
    return names


def stamp(folder, name):
    """What changes when an adapter folder is replaced: its real path and both files' (mtime, size)."""
    path = os.path.join(folder, name)
    try:
        stats = [os.stat(os.path.join(path, f)) for f in (CONFIG_NAME, WEIGHTS_NAME)]
    except OSError:
        return None
    return (os.path.realpath(path),) + tuple((s.st_mtime_ns, s.st_size) for s in stats)


def fingerprint(config_bytes, weights_bytes, weights_sha256=None):
    """An adapter version's identity: sha256 over its config and weights files (16 hex digits shown).
    `weights_sha256`: the weights file's raw digest, when it was hashed from the file (`utils.hashing`)."""
    digest = hashlib.sha256()
    digest.update(hashlib.sha256(config_bytes).digest())
    digest.update(weights_sha256 if weights_sha256 is not None else hashlib.sha256(weights_bytes).digest())
    return digest.hexdigest()[:16]



def publish(folder, name, config_bytes, weights_bytes):
    """Write a new version of adapter `name` and switch `<folder>/<name>` to it atomically. Returns its fingerprint."""
    check_name(name)
    version = fingerprint(config_bytes, weights_bytes)
    versions = os.path.join(folder, VERSIONS_DIR)
    target = os.path.join(versions, f"{name}.{version}")
    os.makedirs(versions, exist_ok=True)
    if not os.path.isdir(target):
        staging = os.path.join(versions, f".{name}.{uuid.uuid4().hex}.tmp")
        os.makedirs(staging)
        atomic_write_bytes(os.path.join(staging, WEIGHTS_NAME), weights_bytes)
        atomic_write_bytes(os.path.join(staging, CONFIG_NAME), config_bytes)
        try:
            os.replace(staging, target)
        except OSError:  # the same version written meanwhile by a concurrent upload (ENOTEMPTY / EEXIST): use it
            shutil.rmtree(staging, ignore_errors=True)
            if not os.path.isdir(target):
                raise
    os.utime(target)  # (re)published now: its grace period, once replaced, starts from here at the earliest
    link = os.path.join(folder, name)
    previous = _retire(folder, name)
    tmp_link = os.path.join(folder, f".{name}.{uuid.uuid4().hex}.link")
    os.symlink(os.path.relpath(target, folder), tmp_link)
    os.replace(tmp_link, link)
    _start_grace(previous, keep=target)
    collect_garbage(folder)
    return version


def unpublish(folder, name):
    """Remove adapter `name` from the folder (its files stay a while for replicas still reading them)."""
    check_name(name)
    link = os.path.join(folder, name)
    previous = _retire(folder, name, "removed")
    if os.path.islink(link):
        try:
            os.unlink(link)
        except FileNotFoundError:  # removed meanwhile by another request or replica
            pass
    elif previous is None:
        raise FileNotFoundError(f"no adapter {name!r} in {folder}")
    _start_grace(previous)
    collect_garbage(folder)


def _retire(folder, name, why="replaced"):
    """The folder that `<folder>/<name>` serves now (a version it links to, or a plain export folder moved into
    `.versions/`, out of the way), so its grace period can start once it is no longer served; None if none."""
    link = os.path.join(folder, name)
    if os.path.islink(link):
        return os.path.realpath(link)
    if os.path.isdir(link):
        moved = os.path.join(folder, VERSIONS_DIR, f"{name}.{why}.{uuid.uuid4().hex[:8]}")
        os.makedirs(os.path.dirname(moved), exist_ok=True)
        try:
            os.replace(link, moved)
        except FileNotFoundError:  # moved meanwhile by a concurrent request
            return None
        return moved
    return None


def _start_grace(path, keep=None):
    """Mark `path` as unserved from now: garbage collection keeps it `grace_s` more seconds for readers (a plain
    folder's or an old version's own mtime may be days old, which would delete it at once)."""
    if path and path != (os.path.realpath(keep) if keep else None):
        try:
            os.utime(path)
        except FileNotFoundError:
            pass


def collect_garbage(folder, grace_s=300):
    """Delete version folders no link points to, once older than `grace_s` (in-flight readers have finished)."""
    versions = os.path.join(folder, VERSIONS_DIR)
    if not os.path.isdir(versions):
        return
    links = [os.path.join(folder, n) for n in os.listdir(folder)]
    live = {os.path.realpath(link) for link in links if os.path.islink(link)}
    now = time.time()
    for entry in os.listdir(versions):
        path = os.path.join(versions, entry)
        try:
            old = now - os.stat(path).st_mtime > grace_s
        except FileNotFoundError:  # another replica collected it first
            continue
        if old and os.path.realpath(path) not in live:
            shutil.rmtree(path, ignore_errors=True)

