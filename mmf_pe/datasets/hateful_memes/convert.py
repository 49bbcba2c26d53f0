"""`mmf_pe convert-hm`: the Hateful Memes challenge files, as published, -> MMF's `hateful_memes` layout.

    mmf_pe convert-hm --src <hateful_memes.zip | extracted folder> [--password PW] [--data-dir $MMF_DATA_DIR]
                      [--bypass-checksum]

writes `<data dir>/datasets/hateful_memes/defaults/`:
    annotations/<split>.jsonl   Phase 2: train, dev_seen, dev_unseen, test_seen, test_unseen; Phase 1: train, dev, test
    images/img/<id>.png         the memes (the jsonl lines say "img": "img/<id>.png")
    conversion.json             source, phase, sha256, counts

Accepted sources: the Phase-2 zip distributed today (`data/*.jsonl` + `data/img/`), the superseded Phase-1 zip
(`dev.jsonl`, `test.jsonl`; `img/` or `img.tar.gz`), and extracted folders, with or without `data/` (`img/` beside the
jsonl files or beside `data/`). A zip's sha256 must be one of the published ones (MMF's list for both phases) unless
`--bypass-checksum`; `MMF_PE_HM_CHECKSUMS` (comma-separated sha256) replaces that list, for mirrors and tests.

Every zip member is checked before anything is read (`mmf_pe.utils.archives`): none may leave the destination, none
may appear twice, none may exceed the size / compression-ratio caps. With `--bypass-checksum` the content stands in
for the checksum: every jsonl line (integer id, img / text strings, 0/1 label), every image named, line counts
against the published release (a difference is reported; `checked_instead_of_sha256` in conversion.json).

Reads only: the source is never moved, changed or deleted. Works without the `unzip` binary (it is used only to speed
up the images of a password-protected zip; Python's decryption is slow). Re-running is idempotent: annotations are
rewritten atomically, images already in place (same size) are kept.
"""
import argparse
import json
import os
import posixpath
import shutil
import stat
import subprocess
import sys
import tarfile
import uuid
import zipfile

from tqdm import tqdm

from mmf_pe.utils.archives import member_size_problem, unsafe_member
from mmf_pe.utils.download import DownloadError, require_tar_data_filter
from mmf_pe.utils.hashing import file_sha256
from mmf_pe.utils.io import atomic_write_bytes, atomic_write_text

PHASE_SPLITS = {
    2: ("train", "dev_seen", "dev_unseen", "test_seen", "test_unseen"),
    1: ("train", "dev", "test"),
}
# sha256 of the challenge zips (facts from MMF's mmf_cli/hm_convert.py: rc10 lists the Phase-1 ones, main adds Phase 2)
PUBLISHED_CHECKSUMS = {
    "d8f1073f5fbf1b08a541cc2325fc8645619ab8ed768091fb1317d5c3a6653a77": 1,
    "a424c003b7d4ea3f3b089168b5f5ea73b90a3ff043df4b8ff4d7ed87c51cb572": 1,
    "6e609b8c230faff02426cf462f0c9528957b7884d68c60ebc26ff83846e5f80f": 1,
    "c1363aae9649c79ae4abfdb151b56d3d170187db77757f3daa80856558ac367c": 2,
}
CHECKSUMS_ENV = "MMF_PE_HM_CHECKSUMS"
# Lines per split as published (the challenge paper, Phase 2; Phase 1: train/dev/test). A copy whose sha256 is not
# published is compared against these; a difference is reported, not refused (a subset or a fixed re-release).
PUBLISHED_COUNTS = {
    2: {"train": 8500, "dev_seen": 500, "dev_unseen": 540, "test_seen": 1000, "test_unseen": 2000},
    1: {"train": 8500, "dev": 500, "test": 1000},
}
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
REQUIRED_KEYS = ("id", "img", "text")
# Per-member caps of a zip (and of img.tar.gz's members): a meme is well under 10 MB, a split's jsonl a few MB; a
# member expanding more than MAX_RATIO times its compressed size (past 1 MiB) is a decompression bomb, not a meme.
MAX_IMAGE_BYTES = 64 << 20
MAX_ANNOTATION_BYTES = 512 << 20
MAX_RATIO = 200


class ConversionError(RuntimeError):
    pass


def default_data_dir():
    """MMF's data directory exactly as rc10 resolves `env.data_dir`: $MMF_DATA_DIR, else <MMF cache dir>/data."""
    from mmf.utils.configuration import resolve_dir

    return resolve_dir("MMF_DATA_DIR", "data")


def accepted_checksums():
    override = os.environ.get(CHECKSUMS_ENV)
    if override:
        return {value.strip().lower() for value in override.split(",") if value.strip()}
    return set(PUBLISHED_CHECKSUMS)



def verify_checksum(path, checksums=None):
    checksums = accepted_checksums() if checksums is None else set(checksums)
    actual = file_sha256(path, progress=True)
    if actual not in checksums:
        raise ConversionError(
            f"{path}: sha256 {actual} is not one of the published Hateful Memes zips (Phase 1 or Phase 2). "
            "The zip distributed today may differ from the published ones (and come without a password): if you got it "
            "from the dataset's page, re-run with --bypass-checksum (mmf_convert_hm: --bypass_checksum 1); the "
            "conversion then checks the content instead: the layout, every jsonl line and every image it names, and "
            "the line counts against the published ones."
        )
    return actual


# --- sources: a zip or a folder, seen as a list of relative posix names ---------------------------------------------
class FolderSource:
    def __init__(self, root):
        self.root = root
        self.encrypted = False

    def names(self):
        for directory, _, files in os.walk(self.root):
            relative = os.path.relpath(directory, self.root)
            for name in files:
                yield posixpath.normpath(posixpath.join(relative.replace(os.sep, "/"), name))

    def path(self, name):
        return os.path.join(self.root, *name.split("/"))

    def read(self, name):
        with open(self.path(name), "rb") as f:
            return f.read()

    def size(self, name):
        return os.path.getsize(self.path(name))

    def place(self, name, dest):
        """A hard link where possible (no copy, and the user's file stays), else a copy; atomic either way."""
        tmp = f"{dest}.{uuid.uuid4().hex}.tmp"
        try:
            os.link(self.path(name), tmp)
        except OSError:
            shutil.copyfile(self.path(name), tmp)
        os.replace(tmp, dest)

    def open(self, name):
        return open(self.path(name), "rb")

    def close(self):
        pass


def _size_problem(name, size, compressed=None):
    """The caps above for one member (read at call time, so a test can lower them)."""
    lowered = name.lower()
    cap = MAX_IMAGE_BYTES if lowered.endswith(IMAGE_EXTENSIONS) else \
        MAX_ANNOTATION_BYTES if lowered.endswith(".jsonl") else None
    return member_size_problem(name, size, compressed, cap, MAX_RATIO)


class ZipSource:
    size_problem = staticmethod(_size_problem)

    def __init__(self, path, password=None):
        self.path_ = path
        try:
            self.zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as error:
            raise ConversionError(f"{path}: not a readable zip file ({error})") from error
        try:
            self.infos = self._checked_infos()
        except ConversionError:
            self.zip.close()
            raise
        self.encrypted = any(info.flag_bits & 0x1 for info in self.infos.values())
        self.password = password.encode("utf-8") if password else None

    def _checked_infos(self):
        """Every member (folders too) checked before anything is read: nothing may land outside the destination,
        no name may appear twice (zipfile would silently keep the last), no member may exceed the caps."""
        infos = {}
        for info in self.zip.infolist():
            name = info.filename
            reason = unsafe_member(name, stat.S_ISLNK(info.external_attr >> 16))
            if reason is None and name in infos:
                reason = "a duplicate name (the zip holds two members of that name)"
            if reason is None and not info.is_dir():
                reason = self.size_problem(name, info.file_size, info.compress_size)
            if reason is not None:
                raise ConversionError(f"{self.path_}: member {name!r} is refused: {reason}")
            infos[name] = info
        return {name: info for name, info in infos.items() if not info.is_dir()}

    def names(self):
        return iter(self.infos)

    def read(self, name):
        try:
            with self.zip.open(name, pwd=self.password) as f:
                return f.read()
        except RuntimeError as error:  # zipfile's "password required" / "Bad password"
            if "password required" in str(error):
                raise ConversionError(f"{self.path_} is password-protected: pass --password") from error
            raise ConversionError(f"{self.path_}: wrong password ({error})") from error
        except zipfile.BadZipFile as error:  # a wrong password that passed ZipCrypto's 1-byte check fails the CRC
            if self.encrypted:
                raise ConversionError(f"{self.path_}: wrong password ({error})") from error
            raise ConversionError(f"{self.path_}: damaged zip ({name}: {error})") from error

    def size(self, name):
        return self.infos[name].file_size

    def open(self, name):
        return self.zip.open(name, pwd=self.password)

    def place(self, name, dest):
        tmp = f"{dest}.{uuid.uuid4().hex}.tmp"
        try:
            with self.open(name) as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def close(self):
        self.zip.close()


# --- layout ----------------------------------------------------------------------------------------------------------
def find_layout(names):
    """(phase, annotation dir prefix, {split: name}, image prefix or None, img.tar.gz name or None)."""
    names = [n for n in names if not n.startswith("__MACOSX/")]
    jsonl = {}
    for name in names:
        directory, base = posixpath.split(name)
        if base == "train.jsonl":
            jsonl.setdefault(directory, None)
    if not jsonl:
        raise ConversionError("no train.jsonl found: expected the Hateful Memes files (data/train.jsonl, "
                              "data/dev_seen.jsonl, ..., data/img/) in a zip or a folder")
    if len(jsonl) > 1:
        raise ConversionError(f"several folders hold a train.jsonl ({sorted(jsonl)}); point --src at one of them")
    directory = next(iter(jsonl))
    prefix = directory + "/" if directory else ""
    present = set(names)
    phase = next((p for p, splits in PHASE_SPLITS.items() if all(prefix + f"{s}.jsonl" in present for s in splits)),
                 None)
    if phase is None:
        missing = [f"{prefix}{s}.jsonl" for s in PHASE_SPLITS[2] if prefix + f"{s}.jsonl" not in present]
        raise ConversionError(f"incomplete Hateful Memes files: {', '.join(missing)} missing (Phase 2 has "
                              f"{', '.join(s + '.jsonl' for s in PHASE_SPLITS[2])}; Phase 1 train, dev, test)")
    splits = {s: prefix + f"{s}.jsonl" for s in PHASE_SPLITS[phase]}
    parent = posixpath.dirname(directory)
    for candidate in (prefix, (parent + "/") if parent else ""):
        image_prefix = candidate + "img/"
        if any(n.startswith(image_prefix) and n.lower().endswith(IMAGE_EXTENSIONS) for n in names):
            return phase, splits, image_prefix, None
        if candidate + "img.tar.gz" in present:
            return phase, splits, None, candidate + "img.tar.gz"
    raise ConversionError(f"no images: neither {prefix}img/ nor {prefix}img.tar.gz (nor img/ beside "
                          f"{directory or 'the jsonl files'})")


def checked_annotations(source, name):
    """The bytes of one jsonl, each line checked (a JSON object with an integer id, a string img and text, a 0/1 label
    if any; no id twice); errors name the file and line."""
    data = source.read(name)
    images, seen = [], {}
    for number, raw in enumerate(data.splitlines(), 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ConversionError(f"{name}:{number}: not UTF-8 (byte {error.start + 1} of the line)") from None
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ConversionError(f"{name}:{number}: not JSON ({error})") from error
        missing = [k for k in REQUIRED_KEYS if not isinstance(row, dict) or k not in row]
        if missing:
            raise ConversionError(f"{name}:{number}: missing key(s) {missing}")
        problem = _row_problem(row)
        if problem:
            raise ConversionError(f"{name}:{number}: {problem}")
        if str(row["id"]) in seen:
            raise ConversionError(f"{name}:{number}: id {row['id']} repeats line {seen[str(row['id'])]}")
        seen[str(row["id"])] = number
        images.append((number, row["img"]))
    return data, images


def _row_problem(row):
    from mmf_pe.data.checks import id_problem

    problem = id_problem(row["id"])
    if problem:
        return problem
    for key in ("img", "text"):
        if not isinstance(row[key], str):
            return f"{key} {row[key]!r:.60} ({type(row[key]).__name__}) is not a string"
    if unsafe_member(row["img"]) or not row["img"].lower().endswith(IMAGE_EXTENSIONS):
        return f"img {row['img']!r:.80} is not a relative image path (img/<id>.png)"
    if "label" in row and (type(row["label"]) is not int or row["label"] not in (0, 1)):
        return f"label {row['label']!r:.30} is not one of the integers 0, 1"
    return None


# --- conversion ------------------------------------------------------------------------------------------------------
def convert(src, data_dir=None, password=None, bypass_checksum=False, checksums=None):
    """Convert `src` (zip or folder); returns the summary written to conversion.json."""
    data_dir = data_dir or default_data_dir()
    src = os.path.abspath(src)
    if not os.path.exists(src):
        raise ConversionError(f"{src} does not exist")
    sha256 = None
    if os.path.isdir(src):
        source = FolderSource(src)
    else:
        if not bypass_checksum:
            sha256 = verify_checksum(src, checksums)
            print(f"{os.path.basename(src)}: sha256 {sha256} (published)")
        source = ZipSource(src, password)
        if password and not source.encrypted:
            print(f"note: {os.path.basename(src)} is not password-protected; --password is not needed")
    try:
        return _convert(source, src, data_dir, sha256, bypassed=bypass_checksum and not os.path.isdir(src))
    finally:
        source.close()


def _convert(source, src, data_dir, sha256, bypassed=False):
    names = list(source.names())
    phase, splits, image_prefix, image_tarball = find_layout(names)
    base = os.path.join(data_dir, "datasets", "hateful_memes", "defaults")
    images_dir = os.path.join(base, "images")
    counts, referenced = {}, []
    annotations = {}
    for split, name in splits.items():  # read and check everything before writing anything
        annotations[split], images = checked_annotations(source, name)
        counts[split] = len(images)
        referenced += [(f"{split}.jsonl", number, image) for number, image in images]
    if image_prefix:
        image_names = [n for n in names if n.startswith(image_prefix) and n.lower().endswith(IMAGE_EXTENSIONS)]
        copied = place_images(source, image_names, image_prefix, os.path.join(images_dir, "img"))
    else:
        copied = extract_image_tarball(source, image_tarball, images_dir)
    missing = [(split, number, image) for split, number, image in referenced
               if not os.path.isfile(os.path.join(images_dir, *image.split("/")))]
    if missing:
        listed = "; ".join(f"{s}:{n} {i}" for s, n, i in missing[:5])
        raise ConversionError(f"{len(missing)} image(s) named in the annotations are not in {src}: {listed}")
    for split, data in annotations.items():
        atomic_write_bytes(os.path.join(base, "annotations", f"{split}.jsonl"), data)
    summary = {"source": src, "sha256": sha256, "phase": phase, "splits": counts,
               "images": len(set(image for _, _, image in referenced)), "images_written": copied}
    if bypassed:  # no published checksum vouches for the content: say what was checked instead
        published = PUBLISHED_COUNTS[phase]
        differ = {split: {"lines": counts[split], "published": published[split]} for split in counts
                  if counts[split] != published[split]}
        summary["checked_instead_of_sha256"] = {
            "layout": f"Phase {phase}: {', '.join(f'{s}.jsonl' for s in counts)} and the images they name",
            "jsonl": "every line a JSON object with an integer id, img and text strings, a 0/1 label if any, no id "
                     "twice in a split", "counts_differing_from_published": differ}
        print(f"--bypass-checksum: {os.path.basename(src)} (sha256 not published) checked instead: layout, every "
              f"jsonl line, {summary['images']} images present")
        if differ:
            print("note: line counts differ from the published release: " + ", ".join(
                f"{split} {d['lines']} (published {d['published']})" for split, d in differ.items()))
    atomic_write_text(os.path.join(base, "conversion.json"), json.dumps(summary, indent=2) + "\n")
    print(f"Hateful Memes Phase {phase} -> {base}: " + ", ".join(f"{s} {c}" for s, c in counts.items()))
    if phase == 1:
        print("note: this is the superseded Phase-1 release (train/dev/test). The configs of this project name the "
              "Phase-2 splits (dev_seen, test_seen, test_unseen): point dataset_config.hateful_memes.annotations.val/"
              "test at dev.jsonl/test.jsonl, or convert the Phase-2 zip.")
    return summary


def place_images(source, names, prefix, dest_dir):
    """Each image into dest_dir (same relative name); those already there with the right size are kept."""
    os.makedirs(dest_dir, exist_ok=True)
    todo = []
    root = os.path.realpath(dest_dir)
    for name in names:
        dest = os.path.join(dest_dir, *name[len(prefix):].split("/"))
        if os.path.commonpath([root, os.path.realpath(dest)]) != root:  # checked per member already; kept as a guard
            raise ConversionError(f"member {name!r} would be written outside {dest_dir}: refused")
        if not (os.path.isfile(dest) and os.path.getsize(dest) == source.size(name)):
            todo.append((name, dest))
    if not todo:
        return 0
    if source.encrypted and shutil.which("unzip") and _unzip_images(source, prefix, todo):
        return len(todo)
    for name, dest in tqdm(todo, desc="images", unit="img", disable=None):
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        source.place(name, dest)
    return len(todo)


def _unzip_images(source, prefix, todo):
    """Fast path for a password-protected zip: `unzip` into a staging folder beside the result, then rename."""
    staging = os.path.join(os.path.dirname(todo[0][1]), f".unzip-{uuid.uuid4().hex}")
    pattern = "".join("[" + c + "]" if c in "*?[]" else c for c in prefix) + "*"
    command = ["unzip", "-qq", "-o", "-P", source.password.decode("utf-8") if source.password else "",
               source.path_, pattern, "-d", staging]
    try:
        print(f"extracting {len(todo)} images with unzip ...")
        if subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0:
            return False  # Python's zipfile does it (slower) and reports any error precisely
        for name, dest in todo:
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            os.replace(os.path.join(staging, *name.split("/")), dest)
        return True
    except OSError:  # a name unzip wrote differently: Python's zipfile places them all (each write is atomic)
        return False
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def extract_image_tarball(source, name, images_dir):
    """Phase-1 copies with `img.tar.gz` (its members are `img/<id>.png`): extracted with tarfile's `data` filter."""
    try:
        require_tar_data_filter()
    except DownloadError as error:
        raise ConversionError(str(error)) from None
    os.makedirs(images_dir, exist_ok=True)
    with source.open(name) as f, tarfile.open(fileobj=f, mode="r|gz") as tar:
        count = 0
        for member in tar:
            problem = _size_problem(member.name, member.size) if member.isfile() else None
            if problem:
                raise ConversionError(f"{name}: member {member.name!r} is refused: {problem}")
            tar.extract(member, images_dir, filter="data")
            count += member.isfile()
    return count


def build_parser():
    parser = argparse.ArgumentParser(prog="mmf_pe convert-hm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", required=True, help="the challenge zip or an extracted folder (read only)")
    parser.add_argument("--password", help="the zip's password (from the dataset's terms page)")
    parser.add_argument("--data-dir", help="MMF's data directory (default: $MMF_DATA_DIR or MMF's cache)")
    parser.add_argument("--bypass-checksum", action="store_true", help="accept a zip whose sha256 is not published")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        convert(args.src, args.data_dir, args.password, args.bypass_checksum)
    except ConversionError as error:
        print(f"convert-hm: {error}", file=sys.stderr)
        return 1
    return 0
