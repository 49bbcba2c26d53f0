"""Request parsing with limits: every bad input becomes a `BadInput` (HTTP 4xx + a message naming the problem)."""
import io
import json
import os
import tempfile

import numpy as np
import torch

MAX_TEXT_CHARS = 10_000
MAX_REGIONS = 1_000


class BadInput(Exception):
    def __init__(self, status, message, field=None):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field

    def body(self):
        return {"error": self.message, "field": self.field, "status": self.status}


def check_text(text, limit=MAX_TEXT_CHARS):
    if text is None:
        return ""
    if not isinstance(text, str):
        raise BadInput(422, "text must be a string", "text")
    if len(text) > limit:
        raise BadInput(413, f"text is {len(text):,} characters; the limit is {limit:,}", "text")
    return text


def features_from_npy(data, feature_dim, filename="features.npy"):
    if not data:
        raise BadInput(400, f"{filename}: empty upload (0 bytes)", "features")
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as error:
        if "pickle" in str(error):  # object arrays need unpickling: refused
            raise BadInput(422, f"{filename}: not a plain .npy array (object arrays need pickle, which is refused)",
                           "features") from None
        raise BadInput(422, f"{filename}: not a readable .npy file ({error})", "features") from None
    except Exception as error:  # noqa: BLE001 - truncated / not an .npy at all
        raise BadInput(422, f"{filename}: not a readable .npy file ({type(error).__name__}: {error})",
                       "features") from None
    if isinstance(array, np.lib.npyio.NpzFile):
        raise BadInput(422, f"{filename}: an .npz archive; send one .npy array", "features")
    return check_features(array, feature_dim, filename)


def features_from_json(value, feature_dim, where="features"):
    if isinstance(value, (str, bytes)):
        try:
            value = json.loads(value)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise BadInput(400, f"{where}: malformed JSON ({getattr(error, 'msg', error)})", "features") from None
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise BadInput(422, f"{where}: must be a list of rows of numbers", "features") from None
    return check_features(array, feature_dim, where)


def check_features(array, feature_dim, where):
    if array.dtype.kind not in "fiu":
        raise BadInput(422, f"{where}: dtype {array.dtype} is not numeric", "features")
    if array.ndim != 2 or array.shape[1] != feature_dim:
        raise BadInput(422, f"{where}: shape {tuple(array.shape)}; expected (regions, {feature_dim})", "features")
    if not 1 <= array.shape[0] <= MAX_REGIONS:
        raise BadInput(422, f"{where}: {array.shape[0]} regions; expected 1..{MAX_REGIONS}", "features")
    if not np.isfinite(array).all():
        raise BadInput(422, f"{where}: contains NaN or infinity", "features")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def decode_image(data, filename, max_pixels):
    """RGB uint8 array of an upload, through the extractor's own decoder (same checks as `mmf_pe extract`)."""
    from mmf_pe.extraction.images import ImageError, load_rgb

    if not data:
        raise BadInput(400, f"{filename}: empty upload (0 bytes)", "image")
    suffix = os.path.splitext(filename or "")[1][:10]
    with tempfile.NamedTemporaryFile(suffix=suffix) as f:
        f.write(data)
        f.flush()
        try:
            return load_rgb(f.name, max_pixels)
        except ImageError as error:
            reason = str(error)
            status = 413 if reason.startswith("too large") else (415 if "not an image" in reason else 422)
            raise BadInput(status, f"{filename}: {reason}", "image") from None
