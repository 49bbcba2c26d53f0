"""Request parsing with limits: every bad input becomes a `BadInput` (HTTP 4xx + a message naming the problem)."""
import io
import json

import numpy as np
import torch

from mmf_pe.serve import jsonsafe

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
        value = parse_json(value, where, "features")
    try:
        with np.errstate(over="ignore"):  # 1e300 becomes inf in float32: refused below, by name
            array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer beyond any float
        raise BadInput(422, f"{where}: must be a list of rows of numbers (each within float32's range)",
                       "features") from None
    return check_features(array, feature_dim, where)


def parse_json(data, where, field=None):
    """A client's JSON (a body or a field holding JSON) with nesting and integer size bounded (see jsonsafe)."""
    try:
        return jsonsafe.loads(data, walk=False)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadInput(400, f"{where}: malformed JSON ({getattr(error, 'msg', error)} at position "
                            f"{getattr(error, 'pos', '?')})", field) from None
    except jsonsafe.JSONLimitError as error:
        inner = jsonsafe.top_key(error.path) if field is None and error.path else None
        at = f" at {error.path}" if error.path else ""
        raise BadInput(400, f"{where}: {error.message}{at}", field or inner) from None
    except ValueError as error:  # e.g. an integer over Python's digit limit inside a JSON string's own parser
        raise BadInput(400, f"{where}: malformed JSON ({error})", field) from None


def check_features(array, feature_dim, where):
    if array.dtype.kind not in "fiu":
        raise BadInput(422, f"{where}: dtype {array.dtype} is not numeric", "features")
    if array.ndim != 2 or array.shape[1] != feature_dim:
        raise BadInput(422, f"{where}: shape {tuple(array.shape)}; expected (regions, {feature_dim})", "features")
    if not 1 <= array.shape[0] <= MAX_REGIONS:
        raise BadInput(422, f"{where}: {array.shape[0]} regions; expected 1..{MAX_REGIONS}", "features")
    with np.errstate(over="ignore"):
        array = np.ascontiguousarray(array, dtype=np.float32)  # the model's dtype: 1e300 (float64) is inf here
    if not np.isfinite(array).all():
        raise BadInput(422, f"{where}: contains NaN or infinity (or values beyond float32's range, ~3.4e38)",
                       "features")
    return torch.from_numpy(array)


def check_filename(filename, field):
    """An upload's file name (used in messages only) with no control characters: a NUL is no file name."""
    if filename and any(ord(c) < 32 or ord(c) == 127 for c in filename):
        raise BadInput(400, f"{field}: the upload's file name {filename[:80]!r} contains control characters (e.g. "
                            "a NUL byte)", field)
    return filename
