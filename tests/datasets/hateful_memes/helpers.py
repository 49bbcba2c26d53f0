"""Hateful Memes challenge files in their published layouts, small: Phase-2 / Phase-1 folders and password zips.

Password-protected zips are built with Debian's `zip -P` (Python's zipfile can read them but not write them).
"""
import hashlib
import json
import os
import shutil
import subprocess

PASSWORD = "not-the-real-one"
PHASE_2 = {"train": 6, "dev_seen": 2, "dev_unseen": 2, "test_seen": 2, "test_unseen": 2}
PHASE_1 = {"train": 6, "dev": 2, "test": 2}
PNG_HEADER = b"\x89PNG\r\n\x1a\n"


def write_release(root, splits=PHASE_2, data_folder=True, images_beside_data=False, first_id=10000):
    """`root/data/{<split>.jsonl, img/<id>.png, README.md, LICENSE.txt}` (or without `data/`); returns the ids."""
    data = os.path.join(root, "data") if data_folder else root
    images = os.path.join(root if images_beside_data else data, "img")
    os.makedirs(images, exist_ok=True)
    os.makedirs(data, exist_ok=True)
    next_id, ids = first_id, {}
    for split, count in splits.items():
        lines = []
        for i in range(count):
            row = {"id": next_id, "img": f"img/{next_id}.png", "text": f"meme {next_id} of {split}"}
            if split != "test_unseen":  # some copies ship test_unseen without labels
                row["label"] = i % 2
            lines.append(json.dumps(row))
            with open(os.path.join(images, f"{next_id}.png"), "wb") as f:
                f.write(PNG_HEADER + next_id.to_bytes(4, "big") * (1 + i))
            ids.setdefault(split, []).append(next_id)
            next_id += 1
        with open(os.path.join(data, f"{split}.jsonl"), "w") as f:
            f.write("\n".join(lines) + "\n")
    for name in ("README.md", "LICENSE.txt"):
        with open(os.path.join(data, name), "w") as f:
            f.write("Hateful Memes (test copy)\n")
    return ids


def zip_release(folder, zip_path, password=PASSWORD):
    """`zip -r -P <password>` of folder's contents (as the challenge zip: `data/...` at its top)."""
    command = ["zip", "-q", "-r"] + (["-P", password] if password else []) + [os.path.abspath(zip_path), "."]
    subprocess.run(command, cwd=folder, check=True)
    return zip_path


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def phase2_zip(directory, name="hateful_memes.zip"):
    release = os.path.join(directory, "release")
    write_release(release)
    path = zip_release(release, os.path.join(directory, name))
    shutil.rmtree(release)
    return path


def release_zip(path, extra=(), symlinks=(), release_root=None):
    """A password-less Phase-2 zip written with Python's zipfile: the release's files, then `extra` members
    [(name, bytes)] as given (names unchecked, duplicates allowed) and `symlinks` [(name, target)] as Unix link
    entries (what `zip -y` stores)."""
    import warnings
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for directory, _, names in os.walk(release_root):
            for name in sorted(names):
                full = os.path.join(directory, name)
                archive.write(full, os.path.relpath(full, release_root).replace(os.sep, "/"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns on a duplicate name, and writes it
            for name, data in extra:
                archive.writestr(zipfile.ZipInfo(name), data, zipfile.ZIP_DEFLATED)
        for name, target in symlinks:
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16
            info.create_system = 3
            archive.writestr(info, target)
    return path
