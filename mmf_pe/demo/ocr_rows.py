"""The demo's OCR rows: each mode's test_seen AUROC when the caption is read from the meme image by Tesseract instead
of given, and the OCR word error rate against the given captions.

The images are read once (`<out>/ocr/test_seen.0.jsonl`, resumable) and that file seeds each run's own OCR cache, so
`mmf_pe evaluate --text-source ocr` scores every run without reading the images again.
"""
import os
import shutil
import subprocess
import sys

SPLIT = "test_seen"
MISSING = "Tesseract is not installed (apt-get install tesseract-ocr tesseract-ocr-eng): OCR rows skipped"


def ocr_stage(out, run_dirs, annotations_dir, log):
    """Score every run's test_seen with OCR'd text (`annotations_dir`: the memes' HMD annotations folder); returns
    {"wer", "words", "images"} or {"skipped": reason}."""
    from mmf_pe.ocr.batch import ocr_annotations
    from mmf_pe.ocr.quality import word_error_rate
    from mmf_pe.tracking.jsonl import find_metrics_file
    from mmf_pe.utils.io import jsonl_records

    if shutil.which("tesseract") is None:
        log(MISSING)
        return {"skipped": MISSING}
    shared = os.path.join(out, "ocr", f"{SPLIT}.0.jsonl")
    os.makedirs(os.path.dirname(shared), exist_ok=True)
    log(f"OCR of the {SPLIT} memes (Tesseract)")
    ocr_annotations(os.path.join(annotations_dir, f"{SPLIT}.jsonl"), shared, progress=False)
    records = [record for record, _ in jsonl_records(shared)]
    wer, words = word_error_rate([(r["ocr_text"], r.get("text", "")) for r in records])
    todo = []
    for run_dir in run_dirs:
        metrics_file = find_metrics_file(run_dir) or os.path.join(run_dir, "logs", "metrics.jsonl")
        if _scored(metrics_file):  # a rerun: scored with OCR'd text earlier
            continue
        log_dir = os.path.dirname(metrics_file)
        seeded = os.path.join(log_dir, "ocr", os.path.basename(shared))
        os.makedirs(os.path.dirname(seeded), exist_ok=True)
        shutil.copyfile(shared, seeded)
        todo.append(run_dir)
    if todo:
        command = [sys.executable, "-m", "mmf_pe.cli", "evaluate"] + todo + ["--text-source", "ocr", "--splits", SPLIT]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    log(f"OCR word error rate {wer:.3f} on {len(records)} {SPLIT} memes ({words} words)")
    return {"wer": wer, "words": words, "images": len(records)}


def _scored(metrics_file):
    from mmf_pe.reporting.runs import load_run

    return os.path.exists(metrics_file) and SPLIT + "_ocr" in load_run(metrics_file).results


def markdown(runs, ocr):
    """Per mode: test_seen AUROC with the given caption and with the OCR'd one, and the WER line."""
    if not ocr:
        return "Not run."
    if "skipped" in ocr:
        return ocr["skipped"] + "."
    lines = ["| Mode | seed | test_seen AUROC, given text | test_seen AUROC, OCR text |", "|---|---:|---:|---:|"]
    for run in runs:
        given = (run.results.get(SPLIT) or {}).get("roc_auc")
        read = (run.results.get(SPLIT + "_ocr") or {}).get("roc_auc")
        lines.append(f"| {run.mode} | {run.seed} | {_fmt(given)} | {_fmt(read)} |")
    lines.append("")
    lines.append(f"OCR word error rate against the given captions: **{ocr['wer']:.3f}** ({ocr['words']} words, "
                 f"{ocr['images']} memes of {ocr.get('size', 'the demo')} px; Tesseract 5, English). The modes were "
                 "trained on the given captions; only the test text changes.")
    return "\n".join(lines)


def _fmt(value):
    return "n/a" if value is None else f"{value:.3f}"
