"""`mmf_pe download <key>`: what the paper's recipe reads, fetched on request to the paths the configs read.

    mmf_pe download visual_bert.pretrained.coco   -> <weights dir>/visual_bert_coco/model.pth (+ config.yaml)
    mmf_pe download hateful_memes.defaults        -> <data dir>/datasets/hateful_memes/defaults/features/detectron.lmdb
    mmf_pe download bert-base-uncased [--revision main]  -> <weights dir>/bert-base-uncased/ (+ REVISION.json)

MMF's zoo tarballs come from MMF's download server (URLs and sha256 as MMF's main branch lists them in
`mmf/configs/zoo/*.yaml`, `mmf://` = https://dl.fbaipublicfiles.com/mmf/data/), resumable and verified before use,
extracted in place; BERT comes from the Hugging Face hub through `huggingface_hub` (`HF_ENDPOINT`, `HF_HUB_OFFLINE`
apply), at a revision whose resolved commit is written beside the files. Re-running is a no-op once done.
Nothing is fetched unless asked: this command, or `checkpoint.resume_zoo=<key>` named by the user.
`MMF_PE_ZOO_FILE`: a JSON file {key: {url, sha256, ...}} that overrides entries (a mirror; the tests' server).
"""
import argparse
import glob
import json
import os
import shutil
import sys

from mmf_pe.utils.download import MARKER, DownloadError, extract, fetch
from mmf_pe.utils.hashing import file_sha256
from mmf_pe.utils.io import atomic_write_text

MMF_PREFIX, MMF_SERVER = "mmf://", "https://dl.fbaipublicfiles.com/mmf/data/"
CHECKPOINT_EXTENSIONS = (".pth", ".ckpt", ".pt")
BERT_FILES = ["config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json", "model.safetensors"]


def _coco(variant, archive, sha256, folder):
    return {"kind": "model", "what": f"MMF's COCO-pretrained VisualBERT ({variant})", "version": "1.0_2020_05_19",
            "url": f"mmf://models/visual_bert/{archive}", "file_name": archive, "sha256": sha256,
            "root": "weights", "folder": folder, "expect": "model.pth"}


COCO_DEFAULT = _coco("COCO train+val, the zoo's default", "visual_bert.pretrained.coco_train_val.tar.gz",
                     "b051b49d35923032e26fcd4bfd64688042acabd2a90893ffa90595be8ce05b90", "visual_bert_coco")
ZOO = {
    "visual_bert.pretrained.coco": COCO_DEFAULT,
    "visual_bert.pretrained.coco.full_train_val": COCO_DEFAULT,
    "visual_bert.pretrained.coco.full": _coco("COCO train 100 %", "visual_bert.pretrained.coco.tar.gz",
                                              "9d809f7aedd7eb596951e32eef1d45f2d25adc5624af52cd828daf103a33b203",
                                              "visual_bert_coco_full"),
    "visual_bert.pretrained.coco.fifty_pc": _coco("COCO train 50 %", "visual_bert.pretrained.coco_fifty_pc.tar.gz",
                                                  "4e2ef5b9ea382feaab610aacad96f2d2e3931831836e8bfff3311c9a05920cff",
                                                  "visual_bert_coco_fifty_pc"),
    "visual_bert.pretrained.coco.ten_pc": _coco("COCO train 10 %", "visual_bert.pretrained.coco_ten_pc.tar.gz",
                                                "3b4d30768180b375a7d71a74568232a40f780a0774f9c624032081b083793727",
                                                "visual_bert_coco_ten_pc"),
    "hateful_memes.defaults": {
        "kind": "dataset", "what": "MMF's Hateful Memes region features (detectron.lmdb, 100 x 2048 a meme)",
        "version": "1.0_2020_10_01", "url": "mmf://datasets/hateful_memes/defaults/features/features_2020_10_01.tar.gz",
        "file_name": "features.tar.gz", "sha256": "ed23243d17485f1c960c073d81420187ab62cbaec2bfa6bc3954ae0252216b73",
        "root": "data", "folder": "datasets/hateful_memes/defaults/features", "expect": "detectron.lmdb"},
    "bert-base-uncased": {"kind": "hub", "what": "BERT base uncased (Hugging Face hub)", "repo_id": "bert-base-uncased",
                          "root": "weights", "folder": "bert-base-uncased", "files": BERT_FILES},
}


# Other spellings of a key (MMF's docs and public repos write the zoo's default variation out): the same entry,
# overrides of the key included.
ALIASES = {"visual_bert.pretrained.coco.defaults": "visual_bert.pretrained.coco"}


def zoo_entries():
    """The table above, with `MMF_PE_ZOO_FILE`'s overrides, and the aliases."""
    entries = {key: dict(value) for key, value in ZOO.items()}
    override = os.environ.get("MMF_PE_ZOO_FILE")
    if override:
        with open(override) as f:
            for key, fields in json.load(f).items():
                entries.setdefault(ALIASES.get(key, key), {}).update(fields)
    for alias, key in ALIASES.items():
        entries[alias] = entries[key]
    return entries


def resolve_url(url):
    return MMF_SERVER + url[len(MMF_PREFIX):] if url.startswith(MMF_PREFIX) else url


def default_dirs(data_dir=None, weights_dir=None):
    """MMF's data dir ($MMF_DATA_DIR, else MMF's cache); env.weights_dir ($MMF_PE_WEIGHTS_DIR, else <data>/weights)."""
    if data_dir is None:
        from mmf.utils.configuration import resolve_dir

        data_dir = resolve_dir("MMF_DATA_DIR", "data")
    weights_dir = weights_dir or os.environ.get("MMF_PE_WEIGHTS_DIR") or os.path.join(data_dir, "weights")
    return {"data": data_dir, "weights": weights_dir}


def destination(key, data_dir=None, weights_dir=None):
    entry = _entry(key)
    return os.path.join(default_dirs(data_dir, weights_dir)[entry["root"]], entry["folder"])


def _entry(key):
    entries = zoo_entries()
    if key not in entries:
        raise KeyError(f"unknown download key {key!r}; known: {', '.join(sorted(entries))}")
    return entries[key]


def how_to_fetch(key):
    """The exact command and the URL, for a run that stops because the file is missing."""
    entry = _entry(key)
    source = resolve_url(entry["url"]) if "url" in entry else f"https://huggingface.co/{entry['repo_id']}"
    return f"mmf_pe download {key}   (fetches {source})"


def aliases(key):
    """The keys naming the same file as `key` (itself first)."""
    entries = zoo_entries()
    url = entries[key].get("url")
    return [key] + sorted(k for k, e in entries.items() if k != key and url and e.get("url") == url)


def mmf_cache_file(key, data_dir=None):
    """A model already downloaded by MMF itself: `<data dir>/models/<key>[.defaults]/` (any alias of the key) holding
    exactly one checkpoint file (`*.ckpt`, `*.pth`, `*.pt`, as MMF's loader requires). None if there is none."""
    entry = _entry(key)
    if entry["kind"] != "model":
        return None
    models = os.path.join(default_dirs(data_dir)["data"], "models")
    for name in aliases(key):
        for folder in (os.path.join(models, name), os.path.join(models, name + ".defaults")):
            found = sorted(path for pattern in CHECKPOINT_EXTENSIONS
                           for path in glob.glob(os.path.join(glob.escape(folder), "*" + pattern)))
            if len(found) == 1 and os.path.isfile(found[0]):
                return found[0]
    return None


def _done(key, entry, folder):
    """Whether `folder` already holds the key's file: fetched and verified here, or linked from MMF's cache."""
    marker = os.path.join(folder, MARKER)
    if not (os.path.exists(os.path.join(folder, entry["expect"])) and os.path.isfile(marker)):
        return False
    with open(marker) as f:
        recorded = json.load(f)
    return recorded.get("sha256") == entry["sha256"] or bool(recorded.get("mmf_cache"))


def _link_from_mmf_cache(key, entry, folder, cached):
    """Put MMF's cached checkpoint where the configs read it: a hard link (same disk), else a symbolic link; no
    second download. Its config.yaml comes along when it has one."""
    os.makedirs(folder, exist_ok=True)
    for source, name in ((cached, entry["expect"]), (os.path.join(os.path.dirname(cached), "config.yaml"),
                                                     "config.yaml")):
        target = os.path.join(folder, name)
        if not os.path.isfile(source) or (name == "config.yaml" and os.path.exists(target)):
            continue
        if os.path.lexists(target):
            os.unlink(target)
        try:
            os.link(source, target)
        except OSError:
            os.symlink(os.path.abspath(source), target)
    atomic_write_text(os.path.join(folder, MARKER), json.dumps(
        {"key": key, "mmf_cache": os.path.abspath(cached), "version": entry.get("version")}, indent=2) + "\n")
    print(f"{key}: found in MMF's cache ({cached}), linked into {folder}; nothing downloaded")
    return folder


def download(key, data_dir=None, weights_dir=None, revision="main"):
    """Fetch, verify and extract one key (a no-op when already done; a model MMF itself already downloaded into its
    cache is linked, not fetched again). Returns the destination folder."""
    entry = _entry(key)
    folder = destination(key, data_dir, weights_dir)
    if entry["kind"] == "hub":
        return _download_hub(entry, folder, revision)
    if _done(key, entry, folder):
        print(f"{key}: already in {folder}")
        return folder
    cached = mmf_cache_file(key, data_dir)
    if cached:
        return _link_from_mmf_cache(key, entry, folder, cached)
    marker = os.path.join(folder, MARKER)
    url = resolve_url(entry["url"])
    archive = fetch(url, os.path.join(folder, entry["file_name"]), entry["sha256"])
    extract(archive, folder)
    _settle(folder, entry["expect"])
    os.unlink(archive)  # verified and extracted: the archive's bytes are not needed twice
    expected = os.path.join(folder, entry["expect"])  # its digest: readers may trust exactly these bytes
    files = {entry["expect"]: file_sha256(expected)} if os.path.isfile(expected) else {}
    atomic_write_text(marker, json.dumps({"key": key, "url": url, "sha256": entry["sha256"],
                                          "version": entry.get("version"), "files": files}, indent=2) + "\n")
    print(f"{key}: {entry['what']} -> {folder}")
    return folder


def _settle(folder, expect):
    """Put the expected entry where the configs read it when the archive nests it (or names the checkpoint
    differently, e.g. `<name>.pth`): the single checkpoint file (with its config.yaml) or the `expect` folder."""
    if os.path.exists(os.path.join(folder, expect)):
        return
    found = []
    for directory, subdirs, files in os.walk(folder):
        names = subdirs + files if not expect.endswith(CHECKPOINT_EXTENSIONS) else files
        for name in names:
            if name == expect or (expect.endswith(CHECKPOINT_EXTENSIONS) and name.endswith(CHECKPOINT_EXTENSIONS)):
                found.append(os.path.join(directory, name))
    if len(found) != 1:
        raise DownloadError(f"{folder}: expected {expect} after extraction, found {found or 'nothing like it'}")
    source = found[0]
    config = os.path.join(os.path.dirname(source), "config.yaml")
    if os.path.isfile(config) and not os.path.exists(os.path.join(folder, "config.yaml")):
        shutil.move(config, os.path.join(folder, "config.yaml"))
    shutil.move(source, os.path.join(folder, expect))


def _download_hub(entry, folder, revision):
    """`huggingface_hub.snapshot_download` of the listed files at `revision`; the commit it resolved to is written
    to REVISION.json beside them (a rerun at the same commit downloads nothing)."""
    from huggingface_hub import HfApi, snapshot_download

    try:
        commit = HfApi().model_info(entry["repo_id"], revision=revision).sha
        snapshot_download(entry["repo_id"], revision=commit, allow_patterns=entry["files"], local_dir=folder)
    except Exception as error:  # huggingface_hub's HTTP / offline / revision errors: one line, no traceback
        raise DownloadError(f"{entry['repo_id']}@{revision}: {type(error).__name__}: {str(error).splitlines()[0]}"
                            f" (HF_ENDPOINT={os.environ.get('HF_ENDPOINT', 'https://huggingface.co')})") from error
    atomic_write_text(os.path.join(folder, "REVISION.json"), json.dumps(
        {"repo_id": entry["repo_id"], "revision": revision, "commit": commit}, indent=2) + "\n")
    print(f"{entry['repo_id']}@{revision} (commit {commit}) -> {folder}")
    return folder


def main(argv=None):
    parser = argparse.ArgumentParser(prog="mmf_pe download", description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    parser.add_argument("keys", nargs="+", metavar="key", help=", ".join(ZOO))
    parser.add_argument("--revision", default="main", help="hub revision for bert-base-uncased (default: main)")
    parser.add_argument("--data-dir", help="MMF's data dir (default: $MMF_DATA_DIR or MMF's cache)")
    parser.add_argument("--weights-dir", help="env.weights_dir (default: $MMF_PE_WEIGHTS_DIR or <data dir>/weights)")
    args = parser.parse_args(argv)
    for key in args.keys:
        try:
            download(key, args.data_dir, args.weights_dir, args.revision)
        except (KeyError, DownloadError) as error:
            print(f"mmf_pe download: {error.args[0]}", file=sys.stderr)
            return 1
    return 0
