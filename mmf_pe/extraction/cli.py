"""`mmf_pe extract`: region features into MMF's feature LMDB; `mmf_pe extract-merge`: join shard outputs.

    mmf_pe extract --images <dir | annotations.jsonl | list.txt> --out features.lmdb --detector vg_frcnn \\
        --weights pytorch_model.bin [--shard 0/4] [--device cuda] [--feature-dtype float16] [--cls-prob off]
    mmf_pe extract-merge --out features.lmdb shard0.lmdb shard1.lmdb ...

Re-running the same command after an interruption resumes. Exit status 1 when any image failed (see the failures
report named in the summary), 2 on bad arguments or settings.
"""
import argparse
import json
import sys

from mmf_pe.extraction.detectors import DETECTORS
from mmf_pe.utils.lmdb_file import LMDBFileError
from mmf_pe.utils.safe_pickle import UnsafeRecordError

# A damaged or hostile LMDB being resumed or merged: one line naming the file and key, exit status 2.
INPUT_ERRORS = (ValueError, FileNotFoundError, LMDBFileError, UnsafeRecordError)


def build_parser():
    p = argparse.ArgumentParser(prog="mmf_pe extract", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--images", nargs="+", required=True,
                   help="image directory, MMF annotation .jsonl ('img' field), .txt list, or image files")
    p.add_argument("--image-root", help="folder that relative paths in .jsonl/.txt files are under (and must stay in)")
    p.add_argument("--allow-outside-root", action="store_true",
                   help="read listed images outside the image root too (absolute paths, ../, symlinks leading out); "
                        "by default they are refused and listed in failures.tsv")
    p.add_argument("--out", required=True, help="output LMDB directory, e.g. features/detectron.lmdb")
    p.add_argument("--detector", default="torchvision_frcnn", choices=sorted(DETECTORS))
    p.add_argument("--weights", help="detector weights file (vg_frcnn: unc-nlp/frcnn-vg-finetuned pytorch_model.bin;"
                                     " torchvision_frcnn: fasterrcnn_resnet50_fpn COCO .pth)")
    p.add_argument("--allow-random-weights", action="store_true", help="run without --weights (tests only)")
    p.add_argument("--num-boxes", type=int, default=100, help="max regions per image (default 100, as HMD)")
    p.add_argument("--min-boxes", type=int, help="min regions per image (default: --num-boxes)")
    p.add_argument("--selection", default="vmb", choices=["vmb", "vg_demo"],
                   help="vmb: MMF's recipe (per-class NMS, top-N); vg_demo: the VG checkpoint demo's recipe")
    p.add_argument("--nms-thresh", type=float, default=0.5)
    p.add_argument("--conf-thresh", type=float, default=0.0)
    p.add_argument("--min-size", type=int, default=800, help="short side after resizing (default 800)")
    p.add_argument("--max-size", type=int, default=1333, help="long side cap (default 1333)")
    p.add_argument("--rpn-post-nms-top-n", type=int, help="fewer proposals = faster (defaults: vg 300, tv 1000)")
    p.add_argument("--rpn-pre-nms-top-n", type=int, help="proposals before RPN NMS (defaults: vg 6000, tv 1000)")
    p.add_argument("--feature", default="c5", choices=["c5", "fc7"],
                   help="torchvision_frcnn only: c5 = 2048-d RoIAlign on C5; fc7 = the 1024-d box-head features")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--batch-size", type=int, default=1, help="images per forward (helps on a GPU, not on CPU)")
    p.add_argument("--num-workers", type=int, help="decoding workers (default 1)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"],
                   help="bf16 autocast (deviates from fp32 features); auto: bf16 only where the device computes it "
                   "natively, else fp32")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--feature-dtype", default="float32", choices=["float32", "float16"],
                   help="float16 halves the LMDB; MMF's reader casts back to float32")
    p.add_argument("--cls-prob", default="full", help="full (MMF default), off, or K to keep the top-K probabilities")
    p.add_argument("--shard", help="i/n: process every n-th image starting at i (merge with extract-merge)")
    p.add_argument("--npy-dir", help="also write MMF's <key>.npy + <key>_info.npy files here")
    p.add_argument("--max-pixels", type=int, help="refuse images with more pixels (default 60M)")
    p.add_argument("--commit-every", type=int, default=16, help="images per LMDB transaction (default 16)")
    p.add_argument("--overwrite", action="store_true", help="discard an existing --out instead of resuming")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    from mmf_pe.extraction.runner import extract_features

    options = {}
    if args.rpn_post_nms_top_n:
        options["rpn_post_nms_top_n"] = args.rpn_post_nms_top_n
    if args.rpn_pre_nms_top_n:
        options["rpn_pre_nms_top_n"] = args.rpn_pre_nms_top_n
    if args.detector == "torchvision_frcnn":
        options["feature"] = args.feature
    elif args.feature != "c5":
        print("mmf_pe extract: --feature applies to torchvision_frcnn only", file=sys.stderr)
        return 2
    extra = {"max_pixels": args.max_pixels} if args.max_pixels else {}
    try:
        summary = extract_features(
            args.images, args.out, detector=args.detector, weights=args.weights,
            allow_random_weights=args.allow_random_weights, num_boxes=args.num_boxes, min_boxes=args.min_boxes,
            selection=args.selection, nms_thresh=args.nms_thresh, conf_thresh=args.conf_thresh,
            min_size=args.min_size, max_size=args.max_size, device=args.device, batch_size=args.batch_size,
            num_workers=args.num_workers, feature_dtype=args.feature_dtype, cls_prob=args.cls_prob, shard=args.shard,
            npy_dir=args.npy_dir, image_root=args.image_root, overwrite=args.overwrite, progress=not args.no_progress,
            precision=args.precision, channels_last=args.channels_last, detector_options=options,
            commit_every=args.commit_every, allow_outside_root=args.allow_outside_root, **extra)
    except INPUT_ERRORS as e:
        print(f"mmf_pe extract: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1))
    if summary["failed"]:
        print(f"mmf_pe extract: {summary['failed']} image(s) failed; see {summary['failures_report']}", file=sys.stderr)
        return 1
    return 0


def merge_main(argv=None):
    p = argparse.ArgumentParser(prog="mmf_pe extract-merge", description="join `mmf_pe extract --shard` outputs")
    p.add_argument("shards", nargs="+", help="shard LMDB directories")
    p.add_argument("--out", required=True)
    p.add_argument("--allow-incomplete", action="store_true", help="merge shards whose run was interrupted")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    from mmf_pe.extraction.store import merge

    try:
        summary = merge(args.shards, args.out, allow_incomplete=args.allow_incomplete, progress=not args.no_progress)
    except INPUT_ERRORS as e:
        print(f"mmf_pe extract-merge: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1))
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
