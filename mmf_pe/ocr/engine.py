"""Tesseract as a subprocess: the Debian engine and its English model, nothing fetched at run time.

The `tesseract` command is called directly (PNG on stdin, text on stdout) rather than through a wrapper library: the
engine's command is then a per-instance setting (pytesseract keeps it in a module global), calls from several threads
are independent, and a missing or crashing engine is one `OcrError` that names the engine and what to install.
"""
import io
import shutil
import subprocess
import time
from dataclasses import dataclass

import numpy as np
from PIL import Image

ENGINE = "tesseract"
INSTALL_HINT = ("install the Debian packages tesseract-ocr and tesseract-ocr-eng "
                "(apt-get install tesseract-ocr tesseract-ocr-eng), or give the engine's path with --ocr-command")
MIN_SIDE = 360  # memes are small (the demo's are 128 px, 12 px letters): upscaled so letters reach ~30 px


class OcrError(RuntimeError):
    """The OCR engine is missing, crashed or timed out; the message names the engine and the fix."""


@dataclass
class OcrResult:
    text: str
    ms: float

    @property
    def empty(self):
        return not self.text


def normalise(text):
    """One line, single spaces: how a caption is stored and scored."""
    return " ".join(text.split())


def prepare(image, min_side=MIN_SIDE):
    """Greyscale, upscaled by a whole factor until the short side reaches `min_side` (Tesseract reads letters of
    20-40 px best; meme captions are often smaller)."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    grey = image.convert("L")
    factor = max(1, -(-min_side // max(1, min(grey.size))))
    if factor > 1:
        grey = grey.resize((grey.width * factor, grey.height * factor), Image.LANCZOS)
    return grey


class OcrEngine:
    """Reads the text of an image with Tesseract. `command`: the engine's executable (name on PATH or a path)."""

    def __init__(self, command=ENGINE, language="eng", page_mode=6, timeout_s=60.0, min_side=MIN_SIDE):
        self.command, self.language, self.page_mode = command, language, page_mode
        self.timeout_s, self.min_side = timeout_s, min_side

    def executable(self):
        found = shutil.which(self.command)
        if not found:
            raise OcrError(f"OCR engine {ENGINE} not found (command {self.command!r}): {INSTALL_HINT}")
        return found

    def version(self):
        """`tesseract 5.3.0`-style version line; raises OcrError when the engine is missing or broken."""
        output = self._run(["--version"], b"").decode("utf-8", "replace")
        return (output.strip().splitlines() or [ENGINE])[0]

    def read(self, image):
        """The text of a PIL image or RGB array, normalised to one line (empty when the image holds none)."""
        started = time.perf_counter()
        buffer = io.BytesIO()
        prepare(image, self.min_side).save(buffer, format="PNG")
        output = self._run(["stdin", "stdout", "-l", self.language, "--psm", str(self.page_mode)], buffer.getvalue())
        return OcrResult(normalise(output.decode("utf-8", "replace")), 1000 * (time.perf_counter() - started))

    def _run(self, arguments, data):
        command = [self.executable(), *arguments]
        try:
            done = subprocess.run(command, input=data, capture_output=True, timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            raise OcrError(f"OCR engine {ENGINE} did not answer within {self.timeout_s} s") from None
        except OSError as error:  # not executable, exec format error, ...
            raise OcrError(f"OCR engine {ENGINE} could not start ({self.command!r}: {error}); {INSTALL_HINT}") from None
        if done.returncode != 0:
            detail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
            raise OcrError(f"OCR engine {ENGINE} failed (exit status {done.returncode}): {' | '.join(detail) or '-'}"
                           + (f"; {INSTALL_HINT}" if "language" in " ".join(detail).lower() else ""))
        return done.stdout
