"""The extraction loop: decode in DataLoader workers, resize + detect in the main process, write transactionally.

Resizing stays in the main process on purpose: bilinear interpolation differs in the last bit between thread counts,
and with near-tied proposal scores that can change the selected boxes; this way the pipeline's fp32 output equals
a plain loop's exactly.

Resumable (keys already in the LMDB are skipped), shardable (`shard=(i, n)` takes every n-th image of the stable
image order), and robust: an image that cannot be decoded or processed is written to the failures report, never
dropped silently and never fatal to the run.
"""
import contextlib
import os
import sys
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

import mmf_pe.extraction.images as image_io
import mmf_pe.extraction.store as store
from mmf_pe.extraction.detectors import build_detector
from mmf_pe.extraction.selection import SelectionConfig

VISUALBERT_DIM = 2048
# Test hook (tests/extraction/test_extract.py, kill -9 + resume): after this many images are committed the loop stops
# moving and waits to be killed, so the interruption lands mid-run however fast the machine is. Unset in normal use.
PAUSE_ENV = "MMF_PE_TEST_EXTRACT_PAUSE_AFTER"


class _Images(Dataset):
    """Decodes one image; failures come back as data, not exceptions."""

    def __init__(self, items, max_pixels):
        self.items, self.max_pixels = items, max_pixels

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        key, path = self.items[index]
        try:
            rgb = image_io.load_rgb(path, self.max_pixels)
            return {"key": key, "path": path, "size": rgb.shape[:2], "rgb": rgb, "error": None}
        except image_io.ImageError as e:
            return {"key": key, "path": path, "error": str(e)}
        except Exception as e:  # noqa: BLE001 - decoder bugs on odd images must not kill a long run
            return {"key": key, "path": path, "error": f"decoding failed: {type(e).__name__}: {e}"}


def _collate(batch):
    return batch


def _worker_init(_):
    torch.set_num_threads(1)  # decoding workers must not compete with the model's threads


def parse_shard(shard):
    if shard is None or isinstance(shard, tuple):
        return shard
    try:
        index, count = (int(part) for part in str(shard).split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like i/n (e.g. 0/4), not {shard!r}") from None
    if not 0 <= index < count:
        raise ValueError(f"--shard {shard}: need 0 <= i < n")
    return index, count


def plan(paths, shard=None):
    """(key, path) work items in a stable order, this shard's share only (every n-th path), plus failures for paths
    whose key (file name without extension) another file already has."""
    index, count = shard or (0, 1)
    items, failures, owner = [], [], {}
    for position, path in enumerate(paths):
        key = image_io.image_key(path)
        mine = position % count == index
        if key in owner:
            if mine:
                failures.append((path, f"duplicate key {key!r}: {owner[key]} has the same name"))
            continue
        owner[key] = path
        if mine:
            items.append((key, path))
    return items, failures


def compact(record, feature_dtype="float32", cls_prob="full"):
    """Storage options: float16 features (MMF's reader casts to float32), cls_prob full / off / top-k."""
    record = dict(record)
    record["features"] = record["features"].astype(np.float16 if feature_dtype == "float16" else np.float32)
    if cls_prob == "off":
        del record["cls_prob"]
    elif cls_prob != "full":
        k = int(cls_prob)
        probs = record.pop("cls_prob")
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        record["cls_prob_topk"] = np.take_along_axis(probs, order, axis=1).astype(np.float16)
        record["cls_prob_topk_classes"] = order.astype(np.int32)
    return record


def extraction_precision(requested, device, log):
    """fp32 or bf16 (extraction's only mixed type) for `--precision fp32 | bf16 | auto`, by the core resolver: auto is
    bf16 only where `device` computes it natively (a CUDA GPU without bf16 gets fp32 here, not fp16); an explicit bf16
    where it is emulated is kept and warned about with the probe's slowdown. The choice and its reason are logged."""
    from mmf_pe.utils.precision import resolve_precision

    if requested not in ("fp32", "bf16", "auto"):
        raise ValueError(f"precision must be fp32, bf16 or auto, not {requested!r}")
    decision = resolve_precision(requested, device)
    name = "bf16" if decision.name == "bf16" else "fp32"
    fallback = "" if name == decision.name else "; extraction runs fp32 instead of fp16"
    log(f"[extract] {decision.describe()}{fallback}")
    return name


def extract_features(images, out, detector="torchvision_frcnn", weights=None, allow_random_weights=False,
                     num_boxes=100, min_boxes=None, selection="vmb", nms_thresh=0.5, conf_thresh=0.0, min_size=800,
                     max_size=1333, device="cpu", batch_size=1, num_workers=None, feature_dtype="float32",
                     cls_prob="full", shard=None, npy_dir=None, image_root=None, overwrite=False,
                     max_pixels=image_io.DEFAULT_MAX_PIXELS, commit_every=16, progress=True, precision="fp32",
                     channels_last=False, detector_options=None, log=None, allow_outside_root=False):
    """Extract region features for `images` (a directory, an MMF annotation .jsonl, a .txt list, an image file, or a
    list of these) into the MMF feature LMDB `out`. Re-running the same call resumes. Returns a summary dict
    (`failed` > 0 means some images are listed in `summary['failures_report']`)."""
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    shard = parse_shard(shard)
    if feature_dtype not in ("float32", "float16"):
        raise ValueError(f"feature_dtype must be float32 or float16, not {feature_dtype!r}")
    if cls_prob not in ("full", "off") and not str(cls_prob).isdigit():
        raise ValueError(f"cls_prob must be 'full', 'off' or a top-k count, not {cls_prob!r}")
    precision = extraction_precision(precision, device, log)
    select = SelectionConfig(method=selection, max_boxes=num_boxes,
                             min_boxes=num_boxes if min_boxes is None else min_boxes, nms_thresh=nms_thresh,
                             conf_thresh=conf_thresh)
    model = build_detector(detector, weights=weights, allow_random_weights=allow_random_weights, min_size=min_size,
                           max_size=max_size, device=device, **(detector_options or {}))
    if model.feature_dim != VISUALBERT_DIM:
        log(f"[extract] WARNING: {detector} gives {model.feature_dim}-d features; pretrained VisualBERT needs "
            f"{VISUALBERT_DIM}-d (set model_config.visual_bert_pe.visual_embedding_dim={model.feature_dim} and train "
            "the visual projection from scratch)")
    if precision == "bf16":  # keeps the backbone in bf16 between convolutions (mmf_pe/extraction/fold_norm.py)
        from mmf_pe.extraction.fold_norm import fold_frozen_batchnorm

        fold_frozen_batchnorm(model.model)
    if channels_last:
        model.model.to(memory_format=torch.channels_last)
        model.channels_last = True

    refused = []
    paths, ignored = image_io.discover(images, image_root, allow_outside_root=allow_outside_root, refused=refused)
    items, failures = plan(paths, shard)
    failures = (refused if not shard or shard[0] == 0 else []) + failures  # refused once, not once per shard
    settings = {**model.describe(), "weights": os.path.abspath(weights) if weights else None,
                "selection": vars(select) | {"nms_thresholds": list(select.nms_thresholds)},
                "feature_dtype": feature_dtype, "cls_prob": str(cls_prob), "shard": list(shard) if shard else None,
                "precision": precision}
    writer, state = store.open_output(out, settings, overwrite=overwrite)
    done_before = sum(1 for key, _ in items if key in writer)
    todo = [(key, path) for key, path in items if key not in writer]
    if npy_dir:
        os.makedirs(npy_dir, exist_ok=True)
    if num_workers is None:
        num_workers = 1 if len(todo) > 1 else 0
    loader = DataLoader(_Images(todo, max_pixels), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, collate_fn=_collate, worker_init_fn=_worker_init,
                        persistent_workers=False, prefetch_factor=4 if num_workers else None)
    autocast = (torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
                if precision == "bf16" else contextlib.nullcontext())
    started = time.time()  # throughput is measured from here: model building and setup are not counted
    written = fallbacks = pending = 0
    last_commit = time.time()
    from tqdm import tqdm

    bar = tqdm(total=len(todo), desc=f"extract {detector}", unit="img", disable=not progress, dynamic_ncols=True)
    try:
        for batch in loader:
            good = [b for b in batch if b["error"] is None]
            failures += [(b["path"], b["error"]) for b in batch if b["error"] is not None]
            with autocast:
                records = _detect(model, good, select, failures)
            for item, record in records:
                fallbacks += record.pop("_fallback_box")
                record = compact(record, feature_dtype, cls_prob)
                writer.put(item["key"], record)
                if npy_dir:
                    store.write_npy(npy_dir, item["key"], record)
                written += 1
                pending += 1
            if pending >= commit_every or time.time() - last_commit > 30:
                writer.commit()
                pending, last_commit = 0, time.time()
                _pause_if_asked(written, log)
            bar.update(len(batch))
            bar.set_postfix(failed=len(failures), refresh=False)
        bar.close()
        report = store.write_failures(out, failures)
    except BaseException:
        bar.close()
        writer.close()  # keep what was finished; the state stays "running" so the next run resumes
        raise
    writer.commit()
    total_keys = len(writer.keys)
    store.finish(out, writer, state, written=total_keys, failed=len(failures))
    seconds = time.time() - started
    summary = {
        "out": out, "images": len(items), "written": written, "already_done": done_before, "failed": len(failures),
        "ignored_non_image_files": len(ignored), "fallback_whole_image_box": fallbacks, "lmdb_entries": total_keys,
        "failures_report": report, "seconds": round(seconds, 2),
        "images_per_s": round(written / seconds, 3) if seconds else None, "feature_dim": model.feature_dim,
        "detector": detector, "selection": select.method, "shard": list(shard) if shard else None,
    }
    summary["complete"] = True
    return summary


def _pause_if_asked(committed, log):
    """The test hook of PAUSE_ENV: wait forever (for a SIGKILL) once `committed` images are in the LMDB."""
    limit = os.environ.get(PAUSE_ENV)
    if limit and committed >= int(limit):
        log(f"[extract] {PAUSE_ENV}={limit}: paused after {committed} committed images")
        while True:
            time.sleep(1)


def _detect(model, good, select, failures):
    """Run a batch; if it fails, retry one image at a time so only the culprit is reported."""
    if not good:
        return []
    try:
        images = [model.preprocess(b["rgb"]) for b in good]
        return list(zip(good, model.extract(images, [b["size"] for b in good], select)))
    except (RuntimeError, ValueError, IndexError) as e:
        if len(good) == 1:
            failures.append((good[0]["path"], f"detector failed: {type(e).__name__}: {e}"))
            return []
        out = []
        for item in good:
            out += _detect(model, [item], select, failures)
        return out
