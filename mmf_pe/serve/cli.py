"""`mmf_pe serve`: score memes over HTTP with one frozen base and the adapters of a folder.

    mmf_pe serve <folder> [--host 127.0.0.1] [--port 8000] [--workers N] [--detector-weights FILE | --no-detector]
    mmf_pe serve --demo          serves logs/demo/adapters/ (after `make demo`)
"""
import argparse
import json
import os
import sys

from mmf_pe import REPO_ROOT

DEMO_FOLDER = os.path.join(REPO_ROOT, "logs", "demo", "adapters")
ENV_SETTINGS = "MMF_PE_SERVE_SETTINGS"  # how the workers of `--workers N` receive the options


def parser():
    p = argparse.ArgumentParser(prog="mmf_pe serve", description=__doc__.split("\n")[0])
    p.add_argument("folder", nargs="?", help="served folder: base/ + one folder per adapter (docs/serving.md)")
    p.add_argument("--demo", action="store_true",
                   help=f"serve {os.path.relpath(DEMO_FOLDER, REPO_ROOT)} (make demo; implies --allow-random-weights, "
                   "as the demo's detector has random weights)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (each loads the base once)")
    p.add_argument("--default-adapter", default=None)
    p.add_argument("--max-batch", type=int, default=16)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--max-queue", type=int, default=256, help="waiting requests before 429 (busy)")
    p.add_argument("--timeout-s", type=float, default=30.0, help="per-request timeout (504 after it)")
    p.add_argument("--max-fanout", type=int, default=16, help="adapters one request may name (adapters=a,b,c or *)")
    p.add_argument("--max-adapters-in-memory", type=int, default=None,
                   help="keep at most N adapters resident (LRU), load the others on use (default: all resident)")
    p.add_argument("--max-upload-mb", type=float, default=10.0)
    p.add_argument("--max-pixels", type=int, default=4096 * 4096, help="larger images are refused (413); the "
                   "detector works at ~800 x 1333, and decoding costs ~3 bytes per pixel (default: 4096 x 4096)")
    p.add_argument("--decode-concurrency", type=int, default=2, help="images decoded / in the detector at once "
                   "(bounds the memory images take: docs/serving.md)")
    p.add_argument("--precision", default="fp32", choices=("auto", "fp32", "bf16", "fp16"),
                   help="scoring precision: auto = bf16 where the device computes it natively (AVX512-BF16/AMX, "
                   "checked by a probe; CUDA with bf16), else fp32 (fp16 on a CUDA GPU without bf16); bf16 where "
                   "it is emulated is refused; fp16 is refused on CPU")
    p.add_argument("--precision-force", action="store_true",
                   help="serve --precision bf16 even where bf16 is emulated (many times slower than fp32)")
    p.add_argument("--ocr", choices=("on", "off"), default="on", help="read the text of images sent without "
                   "text (Tesseract, docs/ocr.md); off: clients must send the text")
    p.add_argument("--ocr-command", default="tesseract", help="the OCR engine's executable (default: on PATH)")
    p.add_argument("--poll-s", type=float, default=1.0, help="how often the adapter folder is re-read")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N: bases, adapters, encoders and the detector")
    p.add_argument("--embedding-cache-mb", type=float, default=256.0,
                   help="in-memory cache of frozen-encoder image / text embeddings (LRU; 0 turns it off)")
    g = p.add_argument_group("detector (images); must match the adapters' recorded feature provenance")
    g.add_argument("--no-detector", action="store_true", help="precomputed features only")
    g.add_argument("--detector", default=None, help="torchvision_frcnn | vg_frcnn (default: as the default adapter's "
                   "provenance records)")
    g.add_argument("--detector-weights", default=None)
    g.add_argument("--allow-random-weights", action="store_true", help="random detector weights (tests, the demo)")
    g.add_argument("--num-boxes", type=int, default=None)
    g.add_argument("--min-boxes", type=int, default=None)
    g.add_argument("--selection", default=None)
    g.add_argument("--min-size", type=int, default=None)
    g.add_argument("--max-size", type=int, default=None)
    g.add_argument("--feature-dtype", default=None)
    return p


def with_demo_defaults(args):
    """`--demo` implies `--allow-random-weights`: the demo's features come from a detector with seeded random weights
    (no detector weights exist offline)."""
    if args.demo:
        args.allow_random_weights = True
    return args


def detector_options(args, provenance):
    """Featurizer keyword arguments: the command line where given, else the adapter's recorded provenance."""
    provenance = provenance or {}
    selection = provenance.get("selection") or {}
    pick = lambda given, recorded, fallback: given if given is not None else (  # noqa: E731
        recorded if recorded is not None else fallback)
    options = {
        "detector": pick(args.detector, provenance.get("detector"), "torchvision_frcnn"),
        "weights": args.detector_weights, "allow_random_weights": args.allow_random_weights,
        "num_boxes": pick(args.num_boxes, selection.get("max_boxes"), 100),
        "min_boxes": pick(args.min_boxes, selection.get("min_boxes"), None),
        "selection": pick(args.selection, selection.get("method"), "vmb"),
        "nms_thresh": selection.get("nms_thresh", 0.5), "conf_thresh": selection.get("conf_thresh", 0.0),
        "min_size": pick(args.min_size, provenance.get("min_size"), 800),
        "max_size": pick(args.max_size, provenance.get("max_size"), 1333),
        "feature_dtype": pick(args.feature_dtype, provenance.get("feature_dtype"), "float32"),
        "device": args.device,
    }
    if options["detector"] == "torchvision_frcnn":  # torchvision's own knobs, as the training extraction set them
        recorded = {k: provenance[k] for k in ("feature", "rpn_pre_nms_top_n", "rpn_post_nms_top_n")
                    if provenance.get(k) is not None}
        if recorded:
            options["detector_options"] = recorded
    return options


def precision_refusal(requested, force=False, device="cpu"):
    """Why `--precision` is refused on the engine's device, or None. A server must not silently run many times
    slower: an explicit bf16 where the probe finds it emulated is refused unless forced (the resolver then warns)."""
    from mmf_pe.utils.precision import PrecisionError, resolve_precision

    try:
        decision = resolve_precision(requested, device)
    except PrecisionError as error:
        return str(error)
    print(f"[serve] {decision.describe()}", file=sys.stderr)
    if decision.warning and not force:
        return (f"--precision {requested} refused: {decision.warning} Give --precision-force to serve in bf16 "
                "anyway.")
    return None


def build_app(options):
    """The app for a dict of options (what `--workers` processes rebuild from the environment)."""
    from mmf_pe.serve.app import Settings, create_app
    from mmf_pe.serve.engine import Engine
    from mmf_pe.serve.layout import adapter_names, read_json

    engine = Engine(options["folder"], options.get("precision", "fp32"), device=options.get("device", "cpu"),
                    embedding_cache_mb=options.get("embedding_cache_mb", 256.0))
    featurizer = None
    if not options["no_detector"]:
        default = options["default_adapter"] or engine.config.get("default_adapter")
        names = adapter_names(options["folder"])
        name = default if default in names else (names[0] if names else None)
        provenance = None
        if name:
            provenance = read_json(os.path.join(options["folder"], name, "adapter_config.json")).get(
                "feature_provenance")
        args = argparse.Namespace(**options["detector_args"])
        if args.detector_weights or args.allow_random_weights:
            from mmf_pe.serve.features import Featurizer

            featurizer = Featurizer(**detector_options(args, provenance))
        else:
            print("[serve] no detector weights given (--detector-weights, or --allow-random-weights for tests): "
                  "images are refused, precomputed features accepted", file=sys.stderr)
    settings = Settings(options["folder"], options["default_adapter"], options["max_batch"], options["max_wait_ms"],
                        options["max_queue"], options["timeout_s"], int(options["max_upload_mb"] * 2**20),
                        options["max_pixels"], options["poll_s"],
                        decode_concurrency=options.get("decode_concurrency", 2),
                        max_fanout=options.get("max_fanout", 16),
                        max_adapters_in_memory=options.get("max_adapters_in_memory"))
    reader = options.get("ocr_command", "tesseract") if options.get("ocr", "on") == "on" else None
    return create_app(settings, engine=engine, featurizer=featurizer, reader=reader)


def options_from_args(args, folder):
    """The JSON-able options `build_app` takes (and `--workers` processes read from the environment)."""
    detector_args = {k: getattr(args, k) for k in ("detector", "detector_weights", "allow_random_weights",
                                                   "num_boxes", "min_boxes", "selection", "min_size", "max_size",
                                                   "feature_dtype", "device")}
    return {"folder": os.path.abspath(folder), "default_adapter": args.default_adapter,
            "max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms, "max_queue": args.max_queue,
            "timeout_s": args.timeout_s, "max_upload_mb": args.max_upload_mb, "max_pixels": args.max_pixels,
            "poll_s": args.poll_s, "precision": args.precision, "no_detector": args.no_detector,
            "device": args.device, "embedding_cache_mb": args.embedding_cache_mb,
            "decode_concurrency": args.decode_concurrency, "detector_args": detector_args,
            "ocr": args.ocr, "ocr_command": args.ocr_command,
            "max_fanout": args.max_fanout, "max_adapters_in_memory": args.max_adapters_in_memory}


def app_from_env():
    return build_app(json.loads(os.environ[ENV_SETTINGS]))


def main(argv=None):
    args = parser().parse_args(argv)
    folder = DEMO_FOLDER if args.demo else args.folder
    args = with_demo_defaults(args)
    if folder is None:
        parser().error("give the served folder, or --demo")
    if not os.path.isfile(os.path.join(folder, "base", "base_config.json")):
        hint = "run `make demo` first (it exports the FC/PE adapters and their base there)" if args.demo else \
            "see docs/serving.md for the layout (base/ + adapter folders)"
        print(f"mmf_pe serve: {folder} has no base/base_config.json: {hint}", file=sys.stderr)
        return 2
    refusal = precision_refusal(args.precision, args.precision_force, args.device)
    if refusal:
        print(f"mmf_pe serve: {refusal}", file=sys.stderr)
        return 2
    os.environ[ENV_SETTINGS] = json.dumps(options_from_args(args, folder))
    import uvicorn

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"[serve] WARNING: binding {args.host}: reachable from other machines", file=sys.stderr)
    uvicorn.run("mmf_pe.serve.cli:app_from_env", factory=True, host=args.host, port=args.port, workers=args.workers,
                log_level="info")
    return 0
