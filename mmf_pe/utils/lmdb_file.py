"""Opening an LMDB read-only so that a damaged file gives a message naming it, never a bus error.

Why: LMDB memory-maps `data.mdb`; a file cut short (a partial copy or download) maps pages past its end, and touching
one kills the process with SIGBUS — no Python exception, no message. Before opening, the file size is held against
LMDB's own meta pages (the newest of the two says how many pages the database uses); corruption found later
(`lmdb.PageNotFoundError`, `CorruptedError`, ...) is re-raised naming the file.
"""
import os
import struct

import lmdb

_MAGIC = 0xBEEFC0DE
# MDB_meta after the 16-byte page header: magic u32 @16, version u32 @20, free db's md_pad (= page size) u32 @40,
# mm_last_pg u64 @136, mm_txnid u64 @144 (64-bit builds, lmdb's mdb.c).
_META_READ = 152


class LMDBFileError(RuntimeError):
    """An LMDB file that is missing, truncated or corrupt; the message names it."""


def data_file(path):
    return os.path.join(path, "data.mdb") if os.path.isdir(path) else path


def _meta(page):
    magic, version = struct.unpack_from("<II", page, 16)
    if magic != _MAGIC:
        return None
    page_size, = struct.unpack_from("<I", page, 40)
    last_page, txn_id = struct.unpack_from("<QQ", page, 136)
    return {"version": version, "page_size": page_size, "last_page": last_page, "txn_id": txn_id}


def check_lmdb_file(path):
    """Raise LMDBFileError unless `path` (an LMDB directory or file) is as long as its meta pages say."""
    data = data_file(path)
    if not os.path.isfile(data):
        raise LMDBFileError(f"{data}: no such LMDB data file")
    size = os.path.getsize(data)
    with open(data, "rb") as f:
        first = f.read(_META_READ)
        if len(first) < _META_READ or _meta(first) is None:
            raise LMDBFileError(f"{data}: not an LMDB file, or its header is damaged ({size} bytes)")
        page_size = _meta(first)["page_size"]
        if page_size < 512 or page_size & (page_size - 1):
            raise LMDBFileError(f"{data}: damaged LMDB header (page size {page_size})")
        f.seek(page_size)
        second = f.read(_META_READ)
    metas = [m for m in (_meta(first), _meta(second) if len(second) == _META_READ else None) if m is not None]
    newest = max(metas, key=lambda m: m["txn_id"])
    needed = (newest["last_page"] + 1) * page_size
    if size < needed:
        raise LMDBFileError(f"{data} is truncated: {size} bytes, but the database uses {needed} "
                            f"({newest['last_page'] + 1} pages of {page_size}); copy or extract it again")
    return newest


def open_readonly(path, **kwargs):
    """`lmdb.open(path, readonly=True, lock=False, ...)` after `check_lmdb_file`; lmdb's errors name the file."""
    check_lmdb_file(path)
    options = {"subdir": os.path.isdir(path), "readonly": True, "lock": False, **kwargs}
    try:
        return lmdb.open(path, **options)
    except lmdb.Error as error:
        raise LMDBFileError(f"{data_file(path)}: cannot open the LMDB ({type(error).__name__}: {error})") from None


def get(txn, key, path):
    """`txn.get(key)` whose lmdb errors (a corrupt page) name the file and key."""
    try:
        return txn.get(key)
    except lmdb.Error as error:
        raise LMDBFileError(f"{data_file(path)}: corrupt LMDB, reading key {key!r} failed "
                            f"({type(error).__name__}: {error})") from None
