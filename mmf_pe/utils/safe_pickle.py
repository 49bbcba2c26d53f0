"""A restricted unpickler for MMF's feature records (LMDB values, `_info.npy` files).

Why: MMF stores each image's features as a pickle, and `pickle.loads` runs whatever callable a record names, so a
feature file from elsewhere could run code on load. A record only ever needs numpy arrays, dtypes and scalars plus
plain containers; every other global is refused, with the file and key in the message. Arrays written by numpy 1
(`numpy.core.*`) and numpy 2 (`numpy._core.*`) both load; nothing is ever imported on a record's say-so.
"""
import importlib
import io
import pickle

import numpy as np

# (module suffix after `numpy.core` / `numpy._core`, name) a numpy array, dtype or scalar pickle refers to.
_NUMPY_CORE_GLOBALS = {("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer")}
_BUILTINS = {"dict", "list", "tuple", "str", "bytes", "bytearray", "int", "float", "complex", "bool", "set",
             "frozenset"}
ALLOWED = "numpy arrays, dtypes and scalars, dict, list, tuple, str, bytes, numbers, bool and None"


class UnsafeRecordError(pickle.UnpicklingError):
    """A pickled record names something other than plain data; nothing of it was run."""


def _numpy_core(suffix):
    for package in ("numpy._core", "numpy.core"):  # numpy 2 first; never imports the deprecated shim on numpy 2
        try:
            return importlib.import_module(f"{package}.{suffix}")
        except ImportError:
            continue
    raise ImportError(f"numpy has no core module {suffix}")


def _latin1_encode(text, encoding="latin1"):
    """`_codecs.encode` as protocol-2 pickles use it for bytes (numpy arrays pickled by Python 3 at protocol 2)."""
    if str(encoding).lower().replace("-", "").replace("_", "") not in ("latin1", "iso88591"):
        raise UnsafeRecordError(f"_codecs.encode with codec {encoding!r}")
    return text.encode("latin1")


class _RecordUnpickler(pickle.Unpickler):
    def __init__(self, file, where):
        super().__init__(file)
        self.where = where

    def find_class(self, module, name):
        if module in ("numpy.core", "numpy._core") or module.startswith(("numpy.core.", "numpy._core.")):
            suffix = module.split(".", 2)[2] if module.count(".") >= 2 else ""
            if (suffix, name) in _NUMPY_CORE_GLOBALS:
                return getattr(_numpy_core(suffix), name)
        elif module == "numpy" and name in ("dtype", "ndarray"):
            return getattr(np, name)
        elif module in ("builtins", "__builtin__") and name in _BUILTINS:
            return getattr(__import__("builtins"), name)
        elif module == "_codecs" and name == "encode":
            return _latin1_encode
        raise UnsafeRecordError(
            f"{self.where}: refused to unpickle {module}.{name} — a feature record may hold only {ALLOWED}; "
            "this file is not a plain MMF feature file (nothing from it was run)")


_BUFFER_FILE_FROM = 1 << 17  # bytes; larger records are read through _BufferFile


class _BufferFile:
    """A read-only file over a buffer (an LMDB value read with `buffers=True`), so that an array's bytes are copied
    once, straight into the object the unpickler builds (`readinto`), instead of first into a `bytes` copy of the
    whole record (800 KB for 100 x 2048 fp32 features). Only valid while the buffer is (inside the transaction)."""

    __slots__ = ("_view", "_pos")

    def __init__(self, data):
        self._view = memoryview(data).cast("B")
        self._pos = 0

    def read(self, size=-1):
        end = len(self._view) if size is None or size < 0 else min(self._pos + size, len(self._view))
        chunk = self._view[self._pos:end].tobytes()
        self._pos = end
        return chunk

    def readinto(self, buffer):
        target = memoryview(buffer).cast("B")
        size = min(len(target), len(self._view) - self._pos)
        target[:size] = self._view[self._pos:self._pos + size]
        self._pos += size
        return size

    def readline(self, size=-1):  # protocol 0-2 opcodes (GLOBAL, ...): short lines
        end = len(self._view) if size is None or size < 0 else min(self._pos + size, len(self._view))
        start, step = self._pos, 256
        while True:
            chunk = self._view[start:min(start + step, end)].tobytes()
            newline = chunk.find(b"\n")
            if newline >= 0 or start + step >= end:
                stop = start + newline + 1 if newline >= 0 else end
                break
            start += step
        return self.read(stop - self._pos)


def loads(data, where="pickled record"):
    """Unpickle `data` (bytes or a buffer) admitting only plain data; `where` (file and key) goes in any error.

    The result holds no reference to `data`: arrays own copies of their bytes (one copy each, read straight from
    `data`), so a buffer into an LMDB transaction may be passed and dropped when the transaction ends."""
    try:
        if isinstance(data, bytes) or len(data) < _BUFFER_FILE_FROM:
            source = io.BytesIO(bytes(data))  # small records: one short copy beats the Python-level reads
        else:
            source = _BufferFile(data)
        return _RecordUnpickler(source, where).load()
    except UnsafeRecordError:
        raise
    except Exception as error:  # truncated or garbled bytes
        raise UnsafeRecordError(f"{where}: not a readable pickled record ({type(error).__name__}: {error})") from None


def load_npy(path):
    """`np.load(path, allow_pickle=True)` for MMF's `.npy` / `_info.npy` files, with object arrays unpickled safely."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        if version not in ((1, 0), (2, 0)):  # 3.0 differs from 2.0 only in the header's text encoding
            raise UnsafeRecordError(f"{path}: .npy format version {version} is not supported here")
        shape, fortran_order, dtype = read_header(f)
        if not dtype.hasobject:
            f.seek(0)
            return np.load(f, allow_pickle=False)
        array = loads(f.read(), where=str(path))
    if not isinstance(array, np.ndarray):
        raise UnsafeRecordError(f"{path}: an object .npy file must hold an array, not {type(array).__name__}")
    return array
