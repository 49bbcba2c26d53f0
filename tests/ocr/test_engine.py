"""The engine's errors name it: a missing command, one that crashes, one that hangs."""
import os
import stat

import pytest
from PIL import Image

from mmf_pe.ocr import OcrEngine, OcrError

IMAGE = Image.new("RGB", (40, 20), (255, 255, 255))


def script(tmp_path, body):
    path = tmp_path / "tesseract"
    path.write_text("#!/bin/sh\n" + body + "\n")
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
    return str(path)


def test_a_missing_engine_names_the_packages():
    with pytest.raises(OcrError, match=r"tesseract not found .*apt-get install tesseract-ocr tesseract-ocr-eng"):
        OcrEngine("/nonexistent/tesseract").read(IMAGE)


def test_a_crashing_engine_is_an_ocr_error_with_its_message(tmp_path):
    crashing = OcrEngine(script(tmp_path, "echo 'Segmentation fault in page layout' >&2; exit 139"))
    with pytest.raises(OcrError, match=r"OCR engine tesseract failed \(exit status 139\): Segmentation fault"):
        crashing.read(IMAGE)


def test_a_missing_language_model_names_the_package(tmp_path):
    engine = OcrEngine(script(tmp_path, "echo \"Failed loading language 'eng'\" >&2; exit 1"))
    with pytest.raises(OcrError, match="tesseract-ocr-eng"):
        engine.read(IMAGE)


def test_a_hanging_engine_times_out(tmp_path):
    with pytest.raises(OcrError, match="did not answer within 0.5 s"):
        OcrEngine(script(tmp_path, "sleep 5"), timeout_s=0.5).read(IMAGE)
