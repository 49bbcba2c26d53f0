"""One way to hash a file: sha256 read in chunks (nothing of the file kept in memory), with a progress bar for the
big ones (zips, feature LMDBs, checkpoints a user waits on)."""
import hashlib
import os

from tqdm import tqdm

CHUNK = 1 << 22


def file_sha256(path: str, progress: bool = False) -> str:
    """The file's sha256 as hex; `progress` shows a tqdm bar (off where stdout is not a terminal)."""
    if not progress:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    digest = hashlib.sha256()
    with open(path, "rb") as f, tqdm(total=os.path.getsize(path), unit="B", unit_scale=True,
                                     desc=f"sha256 {os.path.basename(path)}", disable=None) as bar:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
            bar.update(len(block))
    return digest.hexdigest()
