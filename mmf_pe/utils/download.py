"""Resumable, verified downloads and in-place extraction (no network unless called).

`fetch(url, dest, sha256)`: bytes accumulate in `<dest>.part`; a later call resumes it with an HTTP Range request (a
server that ignores Range restarts it); the sha256 is checked before the file gets its final name, and a mismatch
deletes the partial data (it cannot be resumed into a good file). `extract(archive, folder)`: tarfile's `data`
filter (no links out, no devices), into a staging folder first, so an interrupted extraction leaves nothing half-made.
"""
import http.client
import os
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
import uuid

from tqdm import tqdm

from mmf_pe.utils.hashing import file_sha256

CHUNK = 1 << 20
MARKER = ".mmf_pe_download.json"  # beside what `mmf_pe download` fetched: key, url, archive sha256, file digests


class DownloadError(RuntimeError):
    pass


def require_tar_data_filter():
    """tarfile's `filter="data"` (no members leaving the target, no links out, no devices) exists from Python 3.10.12 /
    3.11.4 / 3.12 on; setup.py requires such a Python, and this refuses clearly where an older one runs anyway
    (older tarfile would otherwise fail with a bare TypeError, or extract unfiltered)."""
    if not hasattr(tarfile, "data_filter"):
        raise DownloadError(f"Python {sys.version.split()[0]} lacks tarfile's 'data' extraction filter, which mmf-pe "
                            "needs to extract archives safely: use Python >= 3.10.12, >= 3.11.4 or >= 3.12")



def fetch(url, dest, sha256, timeout=60):
    """Download `url` to `dest` (resuming `<dest>.part`), verified against `sha256`. Returns `dest`."""
    if os.path.isfile(dest) and file_sha256(dest) == sha256:
        return dest
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    part = dest + ".part"
    have = os.path.getsize(part) if os.path.isfile(part) else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # nothing left to send: the partial file is whole
            return _verified(part, dest, url, sha256)
        raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, OSError) as error:
        raise DownloadError(f"{url}: cannot connect ({getattr(error, 'reason', error)}); "
                            f"{'the partial file is kept, ' if have else ''}run the same command again") from error
    with response:
        if have and response.status != 206:  # Range ignored: the body is the whole file
            have = 0
        length = _content_length(response.headers.get("Content-Length"))
        total = have + length if length is not None else None
        try:
            with open(part, "ab" if have else "wb") as f, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                                               desc=os.path.basename(dest), disable=None) as bar:
                for block in iter(lambda: response.read(CHUNK), b""):
                    f.write(block)
                    bar.update(len(block))
        except (http.client.IncompleteRead, OSError) as error:
            raise DownloadError(_interrupted(url, part, total, error)) from error
    if total is not None and os.path.getsize(part) < total:
        raise DownloadError(_interrupted(url, part, total, "connection closed early"))
    return _verified(part, dest, url, sha256)


def _content_length(value):
    """The header's byte count, or None (unknown: the download goes on, verified by its sha256 at the end) when a
    server sends none or one that is not a plain non-negative number."""
    value = (value or "").strip()
    return int(value) if value.isascii() and value.isdigit() else None


def _interrupted(url, part, total, reason):
    got = os.path.getsize(part) if os.path.exists(part) else 0
    return (f"{url}: download interrupted after {got:,} of {total if total is not None else '?':,} bytes ({reason}); "
            f"kept in {part}: run the same command again to resume")


def _verified(part, dest, url, sha256):
    actual = file_sha256(part)
    if actual != sha256:
        os.unlink(part)
        raise DownloadError(f"{url}: sha256 {actual} is not the expected {sha256}; the download was deleted. "
                            "Run the command again; if it persists the file at that URL has changed.")
    os.replace(part, dest)
    return dest


def extract(archive, folder):
    """Extract a tar(.gz) archive into `folder` (existing entries of the same name are replaced). Returns the names
    of the archive's top-level entries."""
    require_tar_data_filter()
    os.makedirs(folder, exist_ok=True)
    staging = os.path.join(folder, f".extract-{uuid.uuid4().hex}")
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for member in tqdm(members, desc=f"extract {os.path.basename(archive)}", unit="file", disable=None):
                tar.extract(member, staging, filter="data")
        top = sorted(os.listdir(staging))
        for name in top:
            target = os.path.join(folder, name)
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target)
            elif os.path.lexists(target):
                os.unlink(target)
            os.replace(os.path.join(staging, name), target)
        return top
    except (tarfile.TarError, OSError) as error:
        raise DownloadError(f"{archive}: cannot be extracted ({error})") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def recorded_digest(path):
    """The sha256 `mmf_pe download` recorded for `path` when it extracted it from an archive whose published sha256
    it had verified (None: no such record). Lets a reader trust exactly that file, byte for byte."""
    import json

    marker = os.path.join(os.path.dirname(os.path.abspath(path)), MARKER)
    try:
        with open(marker) as f:
            files = json.load(f).get("files") or {}
    except (OSError, ValueError, AttributeError):
        return None
    digest = files.get(os.path.basename(path)) if isinstance(files, dict) else None
    return digest if isinstance(digest, str) else None
