"""Image discovery and decoding: every mode PIL opens works; every bad kind becomes a reason, not a crash."""
import io
import json
import os

import numpy as np
import pytest
from extraction_helpers import one_thread, random_rgb, real_photos  # noqa: F401 (autouse fixture)
from PIL import Image

from mmf_pe.extraction.images import ImageError, discover, image_key, load_rgb


def good_images(directory):
    """One file per awkward-but-valid kind: {name: (path, expected (h, w))}."""
    os.makedirs(directory, exist_ok=True)
    rgb = random_rgb(24, 40)
    out = {}

    def save(name, image, **kw):
        path = os.path.join(directory, name)
        image.save(path, **kw)
        out[os.path.splitext(name)[0]] = path

    save("rgba.png", Image.fromarray(np.dstack([rgb, np.full((24, 40), 128, np.uint8)]), "RGBA"))
    save("palette.png", Image.fromarray(rgb).convert("P"))
    save("palette_transparent.gif", Image.fromarray(rgb).convert("P"), transparency=0)
    save("gray.png", Image.fromarray(rgb[..., 0], "L"))
    save("gray_alpha.png", Image.fromarray(rgb[..., 0], "L").convert("LA"))
    save("bilevel.png", Image.fromarray(rgb[..., 0] > 100))
    save("cmyk.jpg", Image.fromarray(rgb).convert("CMYK"))
    save("sixteen_bit.png", Image.fromarray((rgb[..., 0].astype(np.uint16) * 257), "I;16"))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    save("exif_rotated.jpg", Image.fromarray(rgb), exif=exif.tobytes())
    return out


def test_every_valid_kind_decodes_to_rgb(tmp_path):
    for name, path in good_images(str(tmp_path)).items():
        array = load_rgb(path)
        assert array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3, name
        assert array.shape[:2] == ((40, 24) if name == "exif_rotated" else (24, 40)), name
    sixteen = load_rgb(os.path.join(tmp_path, "sixteen_bit.png"))
    assert np.array_equal(sixteen[..., 0], random_rgb(24, 40)[..., 0])  # 16-bit scaled back to 8-bit, not clipped
    for photo in real_photos(str(tmp_path / "photos")):
        assert min(load_rgb(photo).shape[:2]) == 96


def bad_images(directory):
    """{path: expected reason fragment} for every kind of unusable file."""
    os.makedirs(directory, exist_ok=True)
    buffer = io.BytesIO()
    Image.fromarray(random_rgb(64, 64)).save(buffer, format="PNG")
    png = buffer.getvalue()
    buffer = io.BytesIO()
    Image.fromarray(random_rgb(64, 64)).save(buffer, format="JPEG")
    jpeg = buffer.getvalue()
    files = {
        "empty.jpg": (b"", "empty file"),
        "html.jpg": (b"<html><body>404 not found</body></html>", "not an image"),
        "truncated.png": (png[: len(png) // 2], "truncated"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "truncated"),
        "corrupt.png": (png[:33] + bytes(range(256)) * 8, "corrupt"),
        "bad_header.png": (png[:20] + bytes(64), "not an image"),
    }
    out = {}
    for name, (data, reason) in files.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)
        out[os.path.join(directory, name)] = reason
    bomb = os.path.join(directory, "bomb.png")
    Image.new("1", (9000, 9000)).save(bomb)  # 81 M pixels in a tiny file
    out[bomb] = "too large"
    return out


def test_every_bad_kind_is_a_reason(tmp_path):
    for path, reason in bad_images(str(tmp_path)).items():
        with pytest.raises(ImageError) as error:
            load_rgb(path)
        assert reason in str(error.value), (path, str(error.value))
    with pytest.raises(ImageError, match="cannot read"):
        load_rgb(str(tmp_path / "missing.png"))


def test_discover_directories_annotations_and_lists(tmp_path):
    root = tmp_path / "defaults"
    (root / "img").mkdir(parents=True)
    (root / "annotations").mkdir()
    for name in ("01235", "42953"):
        Image.fromarray(random_rgb(8, 8)).save(root / "img" / f"{name}.png")
    (root / "img" / "notes.txt").write_text("not an image")
    paths, ignored = discover(str(root / "img"))
    assert [image_key(p) for p in paths] == ["01235", "42953"] and ignored == [str(root / "img" / "notes.txt")]
    lines = [{"id": 1235, "img": "img/01235.png", "label": 0, "text": "a"}, {"id": 42953, "img": "img/42953.png"}]
    jsonl = root / "annotations" / "train.jsonl"
    jsonl.write_text("\n".join(json.dumps(x) for x in lines + lines[:1]) + "\n")
    paths, _ = discover([str(jsonl)])
    assert [image_key(p) for p in paths] == ["01235", "42953"]  # the repeated line is the same file
    assert all(os.path.exists(p) for p in paths)
    listing = tmp_path / "list.txt"
    listing.write_text("img/42953.png\n")
    assert discover(str(listing), image_root=str(root))[0] == [str(root / "img" / "42953.png")]
    jsonl.write_text(json.dumps(lines[0]) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"train.jsonl:2: not valid JSON"):
        discover(str(jsonl))
    jsonl.write_text(json.dumps({"id": 3}) + "\n")
    with pytest.raises(ValueError, match=r"train.jsonl:1: no 'img' field"):
        discover(str(jsonl))
