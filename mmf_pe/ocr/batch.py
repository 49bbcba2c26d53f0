"""`mmf_pe ocr --images <dir | annotations.jsonl> --out <annotations.jsonl>`: OCR'd text beside the given text.

Each output record is the input record (its `text` untouched) plus `ocr_text` (and `ocr_error` for an unreadable
image, whose `ocr_text` is then empty). Resumable like extraction: every finished record is appended to
`<out>.partial` at once; a re-run skips the ids found there (or in a finished `<out>`), and the output is written
atomically, in input order, when all are done.
"""
import argparse
import json
import os
import sys

from mmf_pe.ocr.engine import ENGINE, OcrEngine, OcrError
from mmf_pe.utils.io import atomic_write_text, jsonl_records

FIELD = "ocr_text"


def read_sources(images, image_root=None):
    """[(record, image path)] in input order: a folder's images (id = file name without extension, `img` relative
    to the folder) or an annotation file's records (MMF layout, `img` resolved like `mmf_pe extract` does)."""
    from mmf_pe.extraction.images import _resolve, discover, image_key, outside_reason

    if os.path.isdir(images):
        paths, _ = discover(images)
        return [({"id": image_key(p), "img": os.path.relpath(p, images)}, p) for p in paths]
    if not os.path.isfile(images):
        raise FileNotFoundError(f"{images}: no such folder or annotation file")
    root = image_root if image_root is not None else os.path.dirname(os.path.dirname(os.path.abspath(images)))
    items, seen = [], set()
    for record, where in jsonl_records(images):
        name = record.get("img") if isinstance(record, dict) else None
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}: no 'img' field (MMF's layout: \"img\": \"img/01235.png\")")
        path = _resolve(name, images, image_root)
        reason = outside_reason(path, root)
        if reason:
            raise ValueError(f"{where}: {path}: {reason.split('; pass')[0]}")
        record.setdefault("id", image_key(name))
        if str(record["id"]) in seen:
            raise ValueError(f"{where}: duplicate id {record['id']!r}")
        seen.add(str(record["id"]))
        items.append((record, path))
    return items


def _finished(path):
    """{id: record} of the complete lines of a partial or finished output (a line cut by a crash is dropped)."""
    done = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict) and FIELD in record:
                    done[str(record["id"])] = record
    return done


def ocr_annotations(images, out, image_root=None, engine=None, progress=True):
    """OCR every image of `images` into `out`; returns {"records", "read", "resumed", "failed"}."""
    from tqdm import tqdm

    from mmf_pe.extraction.images import ImageError, load_rgb

    engine = engine or OcrEngine()
    items = read_sources(images, image_root)
    partial = out + ".partial"
    done = {**_finished(out), **_finished(partial)}
    resumed = sum(1 for record, _ in items if str(record["id"]) in done)
    # rewrite the partial file with its complete lines only, so appends never follow a cut line
    atomic_write_text(partial, "".join(json.dumps(r) + "\n" for r in done.values()))
    todo = [(record, path) for record, path in items if str(record["id"]) not in done]
    read = failed = 0
    if todo:
        engine.version()  # a missing engine stops the run before the first image
    with open(partial, "a", encoding="utf-8") as sink:
        for record, path in tqdm(todo, desc="ocr", unit="img", disable=not progress):
            try:
                result = dict(record, **{FIELD: engine.read(load_rgb(path)).text})
                read += 1
            except ImageError as error:
                result = dict(record, **{FIELD: "", "ocr_error": f"{path}: {error}"})
                failed += 1
            sink.write(json.dumps(result) + "\n")
            sink.flush()
            done[str(record["id"])] = result
    atomic_write_text(out, "".join(json.dumps(done[str(record["id"])]) + "\n" for record, _ in items))
    os.unlink(partial)
    return {"records": len(items), "read": read, "resumed": resumed, "failed": failed}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="mmf_pe ocr", description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    parser.add_argument("--images", required=True, help="a folder of images or an annotations .jsonl (img field)")
    parser.add_argument("--out", required=True, help="annotations .jsonl written with the ocr_text field")
    parser.add_argument("--image-root", default=None, help="folder the annotations' img paths are relative to "
                        "(default: beside the file, its parent or the parent's images/, as `mmf_pe extract`)")
    parser.add_argument("--ocr-command", default=ENGINE, help="the Tesseract executable (default: tesseract on PATH)")
    parser.add_argument("--language", default="eng", help="Tesseract language model (default eng)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        summary = ocr_annotations(args.images, args.out, args.image_root,
                                  OcrEngine(args.ocr_command, args.language), progress=not args.no_progress)
    except (OcrError, ValueError, FileNotFoundError) as error:
        print(f"mmf_pe ocr: {error}", file=sys.stderr)
        return 2
    print(f"mmf_pe ocr: {summary['records']} records -> {args.out} ({summary['read']} read, {summary['resumed']} "
          f"resumed, {summary['failed']} unreadable images)")
    return 0
