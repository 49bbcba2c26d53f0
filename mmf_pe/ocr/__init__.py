"""Text read from meme images (OCR): Debian's Tesseract with its English model (see docs/ocr.md).

`engine` is MMF-free and imports nothing of ours above the foundations; `batch` (the `mmf_pe ocr` command) reuses
the extractor's image reading and sits with the apps.
"""
from mmf_pe.ocr.engine import ENGINE, INSTALL_HINT, OcrEngine, OcrError, OcrResult, normalise

__all__ = ["ENGINE", "INSTALL_HINT", "OcrEngine", "OcrError", "OcrResult", "normalise"]
