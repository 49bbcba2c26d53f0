"""Atomic writes: a crash mid-write never leaves a truncated file behind.

The temporary file is created with mode 0666 so the process umask applies, as for any ordinary file (mkstemp would
make it 0600).
"""
import contextlib
import os
import uuid


@contextlib.contextmanager
def _temporary_beside(path):
    """Yields (fd, temporary path) in the target's directory; renames it over `path` on success, removes it on error."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        yield fd, tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path, data):
    with _temporary_beside(path) as (fd, _):
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path, text):
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj, path):
    """torch.save to a temporary file in the same directory, then rename."""
    import torch

    with _temporary_beside(path) as (fd, tmp):
        os.close(fd)
        torch.save(obj, tmp)
