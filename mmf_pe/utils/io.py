"""Atomic writes: a crash mid-write never leaves a truncated file behind.

The temporary file is created with mode 0666 so the process umask applies, as for any ordinary file (mkstemp would
make it 0600).
"""
import contextlib
import errno
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
        f = os.fdopen(fd, "wb")
        try:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            f.close()
        except OSError as error:
            _close_quietly(f)
            if error.errno is None:
                raise
            raise _write_error(error, path) from None


def atomic_write_text(path, text):
    atomic_write_bytes(path, text.encode("utf-8"))


class _WriteErrorRecorder:
    """A binary file that remembers the OSError of a failed write: torch's zip writer replaces it with
    `[enforce fail at inline_container.cc] unexpected pos`, which names neither the file nor the cause."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data):
        try:
            return self.f.write(data)
        except OSError as error:
            self.error = error
            raise

    def flush(self):
        self.f.flush()


def atomic_torch_save(obj, path):
    """torch.save to a temporary file in the same directory, then rename. A full disk (or any other failed write)
    raises an OSError naming `path` and the cause ("No space left on device"); the file at `path` is left as it was."""
    import torch

    with _temporary_beside(path) as (fd, tmp):
        f = os.fdopen(fd, "wb")
        recorder = _WriteErrorRecorder(f)
        try:
            torch.save(obj, recorder)
            f.flush()
            os.fsync(f.fileno())
            f.close()
        except Exception as error:
            _close_quietly(f)  # its buffer cannot be written either
            cause = recorder.error if recorder.error is not None else error
            if isinstance(cause, OSError) and cause.errno is not None:
                raise _write_error(cause, path) from None
            raise


def _close_quietly(f):
    try:
        f.close()
    except OSError:
        pass


def _write_error(error, path):
    reason = "no space left on the device" if error.errno == errno.ENOSPC else os.strerror(error.errno).lower()
    return OSError(error.errno, f"cannot save {path}: {reason} ({os.strerror(error.errno)}); "
                                "the file already there, if any, is unchanged")


def jsonl_records(path, error=ValueError):
    """(record, "file:line") of each non-empty line of a jsonl file, in order. A missing file or a line that is not
    JSON raises `error` naming the file (and line), so every reader reports bad annotations the same way."""
    import json

    try:
        f = open(path, encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: annotations not found") from None
    with f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                yield json.loads(line), where
            except json.JSONDecodeError as problem:
                raise error(f"{where}: not valid JSON ({problem.msg})") from None
