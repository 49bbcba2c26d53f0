#!/usr/bin/env python
"""Benchmark region-feature extraction: the `mmf_pe extract` pipeline vs a plain batch-1 fp32 loop of the same model.

Every configuration runs in a fresh subprocess (clean peak-memory figures) on the same images (scikit-learn's and
scikit-image's photographs, at the detector's default 800/1333 resize unless --min-size says otherwise) with random
weights (timing only; pass --weights for real ones). Prints one table: images/s, speed-up over the loop, peak memory,
and the largest feature difference to the loop (fp32 pipeline must be <= 1e-4; options like bf16 deviate).

    python scripts/benchmark_extraction.py [--detectors torchvision_frcnn vg_frcnn] [--num-images 4] [--device cpu]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

MODES = {
    # name: (pipeline?, extra extract_features options)
    "loop_fp32_b1": (False, {}),
    "pipeline_fp32": (True, {}),
    "pipeline_fp32_b4": (True, {"batch_size": 4}),
    "pipeline_channels_last": (True, {"channels_last": True}),
    "pipeline_bf16": (True, {"precision": "bf16"}),
    "pipeline_fewer_proposals": (True, {"fewer_proposals": True}),
}
FEWER = {"torchvision_frcnn": {"rpn_pre_nms_top_n": 500, "rpn_post_nms_top_n": 300},
         "vg_frcnn": {"rpn_pre_nms_top_n": 3000, "rpn_post_nms_top_n": 100}}


def photos(directory, count):
    from PIL import Image
    from sklearn.datasets import load_sample_images

    arrays = list(load_sample_images().images)
    try:
        from skimage import data

        arrays += [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    except Exception:  # noqa: BLE001 - optional extra photographs
        pass
    os.makedirs(directory, exist_ok=True)
    paths = []
    for i in range(count):
        path = os.path.join(directory, f"photo{i:02d}.jpg")
        Image.fromarray(arrays[i % len(arrays)]).save(path, quality=92)
        paths.append(path)
    return paths


def run_mode(args):
    """One configuration in this process; prints a JSON line."""
    import torch

    from mmf_pe.data.lmdb_features import read_record
    from mmf_pe.extraction.detectors import build_detector
    from mmf_pe.extraction.images import load_rgb
    from mmf_pe.extraction.runner import extract_features
    from mmf_pe.extraction.selection import SelectionConfig

    pipeline, options = MODES[args.mode]
    options = dict(options)
    detector_options = FEWER[args.detector] if options.pop("fewer_proposals", False) else {}
    paths = sorted(os.path.join(args.image_dir, p) for p in os.listdir(args.image_dir))
    common = dict(detector=args.detector, weights=args.weights, allow_random_weights=args.weights is None,
                  min_size=args.min_size, max_size=args.max_size, device=args.device)
    features = {}
    if pipeline:
        out = os.path.join(args.work, args.mode + ".lmdb")
        # warm-up on one image (first-call allocations), then the timed run
        extract_features(paths[:1], os.path.join(args.work, args.mode + "_warm.lmdb"), progress=False,
                         detector_options=detector_options, **common, **options)
        summary = extract_features(paths, out, progress=False, detector_options=detector_options, **common,
                                   **options)
        seconds = summary["seconds"]  # from the first image on, like the loop below (model building excluded)
        for path in paths:
            key = os.path.splitext(os.path.basename(path))[0]
            record = read_record(out, key)
            features[key] = record["features"].astype(np.float32)
            features[key + "/bbox"] = record["bbox"]
        assert summary["failed"] == 0
    else:
        detector = build_detector(args.detector, weights=args.weights, allow_random_weights=args.weights is None,
                                  min_size=args.min_size, max_size=args.max_size, device=args.device)
        selection = SelectionConfig()

        def one(path):
            rgb = load_rgb(path)
            with torch.no_grad():
                return detector.extract([detector.preprocess(rgb)], [rgb.shape[:2]], selection)[0]

        one(paths[0])
        start = time.perf_counter()
        for path in paths:
            record = one(path)
            key = os.path.splitext(os.path.basename(path))[0]
            features[key], features[key + "/bbox"] = record["features"], record["bbox"]
        seconds = time.perf_counter() - start
    np.savez(os.path.join(args.work, args.mode + ".npz"), **features)
    # the larger of this process and its (decoding) worker: maxima of different processes do not add up
    peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
               resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    gpu = torch.cuda.max_memory_allocated() / 2**20 if args.device.startswith("cuda") else None
    print(json.dumps({"mode": args.mode, "images": len(paths), "seconds": seconds, "peak_rss_mb": peak / 1024,
                      "peak_gpu_mb": gpu}))


def deviation(work, mode):
    """Largest feature difference to the loop (relative to the largest feature value) over the images where the
    same boxes were selected (within 0.01 px), and how many images got other boxes."""
    base, other = np.load(os.path.join(work, "loop_fp32_b1.npz")), np.load(os.path.join(work, mode + ".npz"))
    worst, differ = 0.0, 0
    for key in [k for k in base.files if not k.endswith("/bbox")]:
        same_boxes = base[key + "/bbox"].shape == other[key + "/bbox"].shape and np.allclose(
            base[key + "/bbox"], other[key + "/bbox"], atol=0.01, rtol=0)
        if not same_boxes:
            differ += 1
            continue
        scale = max(1.0, float(np.abs(base[key]).max()))
        worst = max(worst, float(np.abs(base[key] - other[key]).max()) / scale)
    return worst, differ


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--detectors", nargs="+", default=["torchvision_frcnn"])
    parser.add_argument("--modes", nargs="+", default=list(MODES))
    parser.add_argument("--num-images", type=int, default=4)
    parser.add_argument("--min-size", type=int, default=800)
    parser.add_argument("--max-size", type=int, default=1333)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--weights", help="real weights (one detector at a time); random weights otherwise")
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--detector", help=argparse.SUPPRESS)
    parser.add_argument("--image-dir", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        return run_mode(args)

    import torch

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        image_dir = os.path.join(tmp, "images")
        photos(image_dir, args.num_images)
        for detector in args.detectors:
            work = os.path.join(tmp, detector)
            os.makedirs(work)
            modes = ["loop_fp32_b1"] + [m for m in args.modes if m != "loop_fp32_b1"]
            results = {}
            for mode in modes:
                command = [sys.executable, __file__, "--mode", mode, "--detector", detector, "--image-dir", image_dir,
                           "--work", work, "--min-size", str(args.min_size), "--max-size", str(args.max_size),
                           "--device", args.device] + (["--weights", args.weights] if args.weights else [])
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode != 0:
                    rows.append((detector, mode, "failed: " + done.stderr.strip().splitlines()[-1][:80]))
                    continue
                results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
                r = results[mode]
                ips = r["images"] / r["seconds"]
                base = results.get("loop_fp32_b1")
                speedup = ips / (base["images"] / base["seconds"]) if base else float("nan")
                worst, differ = deviation(work, mode) if mode != "loop_fp32_b1" else (0.0, 0)
                check = ""
                if mode == "pipeline_fp32":
                    check = "OK (<= 1e-4)" if worst <= 1e-4 and not differ else "MISMATCH"
                memory = f"{r['peak_rss_mb']:.0f}" + (f" / {r['peak_gpu_mb']:.0f} GPU" if r["peak_gpu_mb"] else "")
                dev = ("n/a" if differ == r["images"] else f"{worst:.1e}") + (
                    f" (other boxes: {differ}/{r['images']} img)" if differ else "")
                rows.append((detector, mode, f"{ips:8.3f}", f"{speedup:5.2f}x", memory, dev, check))
                print(f"  done {detector} {mode}", file=sys.stderr, flush=True)
    print(f"\nimages: {args.num_images} photographs, resize {args.min_size}/{args.max_size}, device {args.device}, "
          f"torch threads {torch.get_num_threads()}, weights {'given' if args.weights else 'random'}")
    header = ("detector", "mode", "images/s", "vs loop", "peak MB (RSS)", "feature diff, same boxes", "fp32 check")
    widths = [max(len(str(row[i])) if i < len(row) else 0 for row in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)))


if __name__ == "__main__":
    main()
