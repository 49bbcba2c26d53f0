"""Image discovery and decoding: every mode PIL opens works; every bad kind becomes a reason, not a crash."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from mmf_pe.extraction.images import ImageError, discover, image_key, load_rgb
from tests.extraction.helpers import bad_images, good_images, random_rgb, real_photos


def test_every_valid_kind_decodes_to_rgb(tmp_path):
    for name, path in good_images(str(tmp_path)).items():
        array = load_rgb(path)
        assert array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3, name
        assert array.shape[:2] == ((40, 24) if name == "exif_rotated" else (24, 40)), name
    sixteen = load_rgb(os.path.join(tmp_path, "sixteen_bit.png"))
    assert np.array_equal(sixteen[..., 0], random_rgb(24, 40)[..., 0])  # 16-bit scaled back to 8-bit, not clipped
    for photo in real_photos(str(tmp_path / "photos")):
        assert min(load_rgb(photo).shape[:2]) == 96


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
