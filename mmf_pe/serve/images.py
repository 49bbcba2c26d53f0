"""Uploaded images with bounded memory: decoded at most `limit` at a time, shrunk to the detector's working size
before they become arrays, and given up when the request's deadline passes.

A 100 KB PNG can hold 36 megapixels: decoded as RGB that is 108 MB, and the detector's float preprocessing of the
full-size array (float32, normalised, three temporaries) took ~1.4 GB per image before the resize to ~800 pixels.
Here the image is box-reduced by the largest integer factor that keeps it at least at the working size (short side
`min_size`, long side <= `max_size`, the detector's own rule), JPEGs already while decoding (`draft`: libjpeg's
1/2, 1/4, 1/8 scales), so the float preprocessing sees at most ~2x the working size in each dimension. Images under
twice the working size (every Hateful Memes image at 800 pixels) are not reduced and decode exactly as
`mmf_pe extract` decodes them; larger ones are smoothed by the box filter before the detector's bilinear resize, so
their features differ slightly from those of `mmf_pe extract` on the full-size file.
"""
import asyncio
import io
import threading
import time
import warnings
from contextlib import contextmanager

import numpy as np
from PIL import Image, ImageOps
from starlette.concurrency import run_in_threadpool

from mmf_pe.extraction.images import _to_rgb
from mmf_pe.serve.inputs import BadInput

DEFAULT_WORKING_SIZE = (800, 1333)  # the detectors' defaults: used to shrink images a server without detector refuses
REDUCIBLE = ("L", "RGB", "RGBA", "LA", "I", "F", "CMYK", "YCbCr")  # modes PIL's `reduce` averages meaningfully
TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
             5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
             8: Image.Transpose.ROTATE_90}
ORIENTATION = 0x0112


class Expired(Exception):
    """The request's deadline passed before its image was done (answered 504)."""


def reduction_factor(width, height, min_size, max_size):
    """The largest integer k with (width / k, height / k) still at least the working size (1: no reduction)."""
    scale = min(min_size / min(width, height), max_size / max(width, height))
    return max(1, int(1.0 / scale)) if scale < 1 else 1


@contextmanager
def _opened(data, filename, max_pixels):
    """The upload opened (its header read, no pixels yet) once it passed the checks that come before decoding: empty
    upload, pixel cap, decompression bombs. Errors while decoding inside the block are BadInput 413 / 415 / 422
    naming the `image` field, with the extractor's `load_rgb` messages."""
    if not data:
        raise BadInput(400, f"{filename}: empty upload (0 bytes)", "image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise BadInput(413, f"{filename}: too large: {width}x{height} pixels > limit {max_pixels} "
                                        "(--max-pixels; decompression bomb?)", "image")
                if width < 1 or height < 1:
                    raise BadInput(422, f"{filename}: invalid size {width}x{height}", "image")
                yield image
    except BadInput:
        raise
    except Image.UnidentifiedImageError:
        raise BadInput(415, f"{filename}: not an image PIL can identify (unknown format or corrupt header)",
                       "image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise BadInput(413, f"{filename}: too large (decompression bomb): {error}", "image") from None
    except (OSError, SyntaxError, ValueError, EOFError, TypeError, IndexError, KeyError, MemoryError) as error:
        reason = str(error) or type(error).__name__
        raise BadInput(422, f"{filename}: corrupt or truncated image: {reason}", "image") from None


def decode_for_detector(data, filename, max_pixels, working_size=DEFAULT_WORKING_SIZE):
    """(RGB uint8 array, its size before reduction as (height, width) after EXIF orientation) of an upload.

    Same checks and messages as the extractor's `load_rgb` (pixel cap before decoding, decompression bombs,
    truncated files); BadInput 413 / 415 / 422 naming the `image` field."""
    with _opened(data, filename, max_pixels) as image:
        width, height = image.size
        factor = reduction_factor(width, height, *working_size)
        if factor == 1:  # the extractor's own path, byte for byte
            image.load()
            return _to_rgb(ImageOps.exif_transpose(image)), _oriented(image, (height, width))
        return _reduced(image, factor, working_size), _oriented(image, (height, width))


def decode_rgb(data, filename, max_pixels):
    """An upload as one full-size RGB PIL image, as MMF's datasets read an image file (`convert("RGB")`, no EXIF
    rotation): what a frozen encoder's image processor and OCR read for bases without a detector. Same checks and
    4xx errors as `decode_for_detector`."""
    with _opened(data, filename, max_pixels) as image:
        return image.convert("RGB")  # a copy (even of an RGB image): it outlives the opened file


class Upload(tuple):
    """A request's uploaded image `(filename, bytes)` that keeps its one decode.

    OCR (no client text), the detector and a frozen encoder's image processor all read the same request's image;
    the first of them decodes it (inside the image gate, under the request's deadline) and the others reuse that
    copy, so one request decodes its image once and holds at most one decoded copy (a fan-out over bases that
    need different decodes, detector and full-size, replaces the copy)."""

    def __new__(cls, filename, data):
        upload = super().__new__(cls, (filename, data))
        upload._decoded, upload._lock = {}, threading.Lock()
        return upload

    def decoded(self, max_pixels, working_size=None):
        key = (max_pixels, None if working_size is None else tuple(working_size))
        with self._lock:  # two readers of one request in two worker threads: still one decode
            if key not in self._decoded:
                self._decoded.clear()
                self._decoded[key] = _decode(self, max_pixels, working_size)
            return self._decoded[key]


def decoded(image, max_pixels, working_size=None):
    """The decoded upload `image` ((filename, bytes) or an `Upload`, whose decode is kept for its request's other
    readers): with `working_size`, `decode_for_detector`'s (array, original size); without, `decode_rgb`'s full-size
    RGB PIL image."""
    if isinstance(image, Upload):
        return image.decoded(max_pixels, working_size)
    return _decode(image, max_pixels, working_size)


def _decode(image, max_pixels, working_size):
    filename, data = image
    if working_size is None:
        return decode_rgb(data, filename, max_pixels)
    return decode_for_detector(data, filename, max_pixels, working_size)


def upright(image):
    """A decoded PIL image turned as its EXIF orientation says (OCR reads text upright; the frozen encoders, like
    MMF's datasets, see the stored orientation). The image itself when no turn is needed."""
    orientation = _orientation(image)
    return image.transpose(TRANSPOSE[orientation]) if orientation in TRANSPOSE else image


def _orientation(image):
    try:
        return image.getexif().get(ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - unreadable EXIF: as PIL's exif_transpose, no rotation
        return 1


def _oriented(image, size):
    height, width = size
    return (width, height) if _orientation(image) in (5, 6, 7, 8) else (height, width)


def _reduced(image, factor, working_size):
    orientation = _orientation(image)
    if image.format == "JPEG":  # libjpeg scales while decoding: the full-size image never exists
        width, height = image.size
        image.draft("RGB" if image.mode == "RGB" else None, (-(-width // factor), -(-height // factor)))
    image.load()
    factor = reduction_factor(*image.size, *working_size)  # what is left after draft's power-of-two scale
    sixteen_bit = image.mode.startswith("I;16")
    if sixteen_bit:
        image = image.convert("I")
    elif image.mode == "1":
        image = image.convert("L")
    elif image.mode not in REDUCIBLE:  # palettes: colours, not indices, are averaged
        image = image.convert("RGB")
    if factor > 1:
        image = image.reduce(factor)
    if orientation in TRANSPOSE:
        image = image.transpose(TRANSPOSE[orientation])
    if sixteen_bit:  # as the extractor scales 16-bit data (>> 8)
        gray = np.clip(np.asarray(image).astype(np.float64) / 256.0, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    return _to_rgb(image)


class ImageGate:
    """At most `limit` images decoded or in the detector at once (each holds up to ~3 bytes per pixel of the upload
    plus its working-size copies). A request waits for its turn on the event loop (no worker thread held) and only
    until its deadline; a slot is freed when its work has finished, even if the caller stopped waiting."""

    def __init__(self, limit):
        self.limit = max(1, int(limit))
        self.in_flight = 0
        self._semaphore = None  # made on the serving loop at first use

    async def run(self, deadline, work, *args):
        """`work(*args)` in a worker thread once a slot is free; Expired if `deadline` (time.monotonic) passes
        first, while waiting for a slot or for the work."""
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.limit)
        try:
            await asyncio.wait_for(self._semaphore.acquire(), max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise Expired() from None
        self.in_flight += 1
        task = asyncio.ensure_future(run_in_threadpool(_before_deadline, deadline, work, *args))
        task.add_done_callback(self._finished)
        try:
            return await asyncio.wait_for(asyncio.shield(task), max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise Expired() from None

    def _finished(self, task):
        self.in_flight -= 1
        self._semaphore.release()
        if not task.cancelled():
            task.exception()  # retrieved: a caller that gave up leaves no "never retrieved" warning


def _before_deadline(deadline, work, *args):
    if time.monotonic() > deadline:  # waited its turn past the deadline: skip the work
        raise Expired()
    return work(*args)
