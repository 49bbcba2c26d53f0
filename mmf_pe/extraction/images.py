"""Finding images and decoding them robustly.

Every image PIL can open is turned into an RGB uint8 array (EXIF orientation applied, alpha dropped like OpenCV's
`imread`, 16-bit scaled to 8-bit). Anything else becomes an `ImageError` with a reason, never an exception that stops
a long run: the caller reports it as a failure.
"""
import json
import os
import warnings

import numpy as np
from PIL import Image, ImageOps

DEFAULT_MAX_PIXELS = 60_000_000  # below PIL's own bomb limit (2 x 89.5M): refuse absurdly large images up front


class ImageError(Exception):
    """An image that cannot be used; str(self) is the reason written to the failures report."""


def image_extensions():
    return {ext.lower() for ext in Image.registered_extensions()}


def image_key(path):
    """MMF's LMDB key: the file name without directory and extension ('img/01235.png' -> '01235')."""
    return os.path.splitext(os.path.basename(path))[0]


class OutsideRootError(ValueError):
    """A listed image path that leads outside the image root (absolute, `../`, or a symlink pointing out)."""


def outside_reason(path, root):
    """Why `path` may not be read under `root` (None if it stays inside once symlinks and `..` are resolved)."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if os.path.commonpath([real, real_root]) == real_root:
        return None
    how = "absolute path" if os.path.isabs(path) else "a symlink to" if real != os.path.normpath(
        os.path.abspath(path)) and ".." not in os.path.normpath(path).split(os.sep) else "leads to"
    return f"outside the image root {root} ({how} {real}); pass --allow-outside-root to read images anywhere"


def discover(sources, image_root=None, allow_outside_root=False, refused=None):
    """Image paths from directories (recursive, image extensions only), jsonl annotation files (`img` field, MMF's
    layout), text files (one path per line) or single image files. Returns (paths, ignored) in a stable order;
    duplicates of the same file are dropped.

    A path read from a listing (an annotation file is data, perhaps from elsewhere) must stay inside the image root
    (`image_root`, else the listing folder's parent, MMF's `defaults/`): absolute paths, `../` and symlinks leading
    out are appended to `refused` as (path, reason) — an error if `refused` is None — unless `allow_outside_root`.
    Folders and image files named as sources are the caller's own choice and read as they are."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    paths, ignored, seen = [], [], set()

    def inside(candidates, root):
        kept = []
        for path in candidates:
            reason = None if allow_outside_root else outside_reason(path, root)
            if reason is None:
                kept.append(path)
            elif refused is None:
                raise OutsideRootError(f"{path}: {reason}")
            else:
                refused.append((path, reason))
        return kept

    exts = image_extensions()
    for source in map(str, sources):
        if os.path.isdir(source):
            found = []
            for root, dirs, files in os.walk(source):
                dirs[:] = [d for d in dirs if not d.startswith(".") and not d.endswith(".lmdb")]
                for name in files:
                    if name.startswith("."):
                        continue
                    (found if os.path.splitext(name)[1].lower() in exts else ignored).append(os.path.join(root, name))
            candidates = sorted(found)  # the folder the user named (convert-mmh's images/ are links to img_resized/)
        elif source.endswith(".jsonl"):
            candidates = inside(_from_jsonl(source, image_root), _listing_root(source, image_root))
        elif source.endswith((".txt", ".lst")):
            candidates = inside(_from_list(source, image_root), _listing_root(source, image_root))
        elif os.path.exists(source):
            candidates = [source]
        else:
            raise FileNotFoundError(f"image source {source} does not exist")
        for path in candidates:
            real = os.path.realpath(path)
            if real not in seen:
                seen.add(real)
                paths.append(path)
    return paths, sorted(ignored)


def _listing_root(listing, image_root):
    return image_root if image_root is not None else os.path.dirname(os.path.dirname(os.path.abspath(listing)))


def _from_jsonl(path, image_root):
    out = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{number}: not valid JSON ({e.msg})") from None
            name = record.get("img", record.get("image")) if isinstance(record, dict) else None
            if not isinstance(name, str) or not name:
                raise ValueError(f"{path}:{number}: no 'img' field (MMF's layout: \"img\": \"img/01235.png\")")
            out.append(_resolve(name, path, image_root))
    return out


def _from_list(path, image_root):
    with open(path, encoding="utf-8") as f:
        return [_resolve(line.strip(), path, image_root) for line in f if line.strip()]


def _resolve(name, listing, image_root):
    """An annotation's image path: absolute, or under --image-root, or relative to the listing's folder, its parent
    (MMF: annotations/ beside img/) or the parent's images/ (MMF: defaults/images/img/)."""
    if os.path.isabs(name):
        return name
    if image_root is not None:
        return os.path.join(image_root, name)
    base = os.path.dirname(os.path.abspath(listing))
    candidates = [os.path.join(base, name), os.path.join(base, "..", name), os.path.join(base, "..", "images", name)]
    for candidate in candidates:
        if os.path.exists(candidate):
            return os.path.normpath(candidate)
    return os.path.normpath(candidates[0])  # reported as missing when loaded


def load_rgb(path, max_pixels=DEFAULT_MAX_PIXELS):
    """Decode `path` into an (H, W, 3) uint8 RGB array or raise ImageError(reason)."""
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise ImageError(f"cannot read file ({e.strerror or e})") from None
    if size == 0:
        raise ImageError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageError(f"too large: {width}x{height} pixels > limit {max_pixels} (decompression bomb?)")
                if width < 1 or height < 1:
                    raise ImageError(f"invalid size {width}x{height}")
                image.load()
                image = ImageOps.exif_transpose(image)
                return _to_rgb(image)
    except ImageError:
        raise
    except Image.UnidentifiedImageError:
        raise ImageError("not an image PIL can identify (unknown format or corrupt header)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"too large (decompression bomb): {e}") from None
    except (OSError, SyntaxError, ValueError, EOFError, TypeError, IndexError, KeyError, MemoryError) as e:
        reason = str(e) or type(e).__name__
        raise ImageError(f"corrupt or truncated image: {reason}") from None


def _to_rgb(image):
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(image).astype(np.float64)
        # 16-bit data (PNG opens as "I"/"I;16"): scale like OpenCV does (>> 8)
        values = values / 256.0 if values.max(initial=0) > 255 or image.mode.startswith("I;16") else values
        gray = np.clip(values, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode == "F":
        gray = np.clip(np.asarray(image), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode != "RGB":
        image = image.convert("RGB")
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ImageError(f"unexpected decoded shape {array.shape}")
    return np.ascontiguousarray(array)
