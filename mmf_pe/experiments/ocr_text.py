"""`mmf_pe evaluate --text-source ocr`: the test splits scored with the text OCR reads from their images.

Each split's annotations go through `mmf_pe ocr` (cached and resumable under the run's `logs/ocr/`), then are written
again with `text` replaced by `ocr_text` (the given caption kept as `given_text`); the split is scored from that file
under the name `<split>_ocr`, so its row stands beside the given-text row in the report.
"""
import json
import os
from collections import OrderedDict

from mmf_pe.ocr.batch import ocr_annotations
from mmf_pe.ocr.quality import word_error_rate
from mmf_pe.utils.io import atomic_write_text

SUFFIX = "_ocr"


def ocr_splits(chosen, data_dir, out_dir, image_root=None, engine=None, log=print):
    """OrderedDict `<split>_ocr` -> [absolute annotation paths carrying OCR'd text] for `chosen` (split -> paths
    relative to `data_dir`)."""
    result = OrderedDict()
    for name, paths in chosen.items():
        scored_paths, pairs = [], []
        for index, path in enumerate(paths):
            read = os.path.join(out_dir, f"{name}.{index}.jsonl")
            ocr_annotations(os.path.join(data_dir, path), read, image_root=image_root, engine=engine)
            records = [json.loads(line) for line in open(read, encoding="utf-8") if line.strip()]
            pairs += [(r["ocr_text"], r.get("text", "")) for r in records]
            scored = os.path.join(out_dir, f"{name}.{index}.scored.jsonl")
            atomic_write_text(scored, "".join(json.dumps({**r, "text": r["ocr_text"], "given_text": r.get("text")})
                                              + "\n" for r in records))
            scored_paths.append(os.path.abspath(scored))
        wer, words = word_error_rate(pairs)
        log(f"[evaluate] {name}: OCR word error rate {wer:.3f} against the given captions ({words} words)")
        result[name + SUFFIX] = scored_paths
    return result
