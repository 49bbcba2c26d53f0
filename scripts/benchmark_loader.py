#!/usr/bin/env python
"""Samples/s of the real MMF input pipeline (a script, not a test): LMDB features -> processors -> collate.

    .venv/bin/python scripts/benchmark_loader.py [--samples 256] [--workers 0 1 2] [--dtypes float32 float16]

Generates an HMD-layout dataset (`mmf_pe/data/tiny_hmd.py`) with 100 x 2048 region features per sample, stored fp32 or
fp16, builds the `mmf_pe` trainer as `mmf_run` does (rc10's dataset, its LMDB reader through our safe reader, the
text processor, rc10's collate and our global-order sampler) and times its `train_loader`: the first batch (worker
start-up) is left out. Each setting runs in a fresh process. The table ends with the samples/s a GPU needs at a named
step time, to compare with.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

SPLITS = {"dev_seen": 16, "dev_unseen": 8, "test_seen": 8, "test_unseen": 8}


def make_data(root, samples, regions, dim, dtype):
    from mmf_pe.data.tiny_hmd import make_tiny_hmd

    return make_tiny_hmd(os.path.join(root, dtype), feature_dim=dim, num_regions=regions,
                         splits={"train": samples, **SPLITS}, feature_dtype=dtype)


def run_setting(spec):
    """One setting in this fresh process: returns samples/s over the batches after the first."""
    from mmf_pe import REPO_ROOT
    from mmf_pe.experiments.evaluate import _build_trainer

    os.environ["MMF_DATA_DIR"] = spec["data_dir"]
    project = os.path.join(REPO_ROOT, "projects", "visual_bert_pe")
    config = os.path.join(spec["data_dir"], "loader.yaml")
    with open(config, "w") as f:
        f.write(f"includes:\n  - {project}/hmd_fc.yaml\n  - {project}/tiny.yaml\n")
    trainer = _build_trainer([
        f"config={config}", "model=visual_bert_pe", "dataset=hateful_memes", "run_type=train",
        f"env.save_dir={spec['data_dir']}/save", "training.wandb.enabled=False", f"training.batch_size={spec['batch']}",
        f"training.num_workers={spec['workers']}", f"dataset_config.hateful_memes.max_features={spec['regions']}",
        f"model_config.visual_bert_pe.visual_embedding_dim={spec['dim']}", "training.seed=1"])
    loader = iter(trainer.train_loader)
    first = next(loader)
    dtype = str(first["image_feature_0"].dtype)
    count, start = 0, time.perf_counter()
    for batch in loader:
        count += len(batch["id"]) if "id" in batch else spec["batch"]
    seconds = time.perf_counter() - start
    return {**spec, "samples": count, "seconds": seconds, "samples_per_s": count / seconds, "batch_dtype": dtype}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--regions", type=int, default=100)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float16"], choices=["float32", "float16"])
    parser.add_argument("--gpu-step-ms", type=float, default=50.0, help="a GPU step time to compare the rates with")
    parser.add_argument("--json", help="also write the raw measurements here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(run_setting(json.loads(args.worker))))
        return 0
    results = []
    with tempfile.TemporaryDirectory(prefix="mmf_pe_loader_") as root:
        for dtype in args.dtypes:
            data = make_data(root, args.samples, args.regions, args.dim, dtype)
            for workers in args.workers:
                spec = {"dtype": dtype, "workers": workers, "batch": args.batch, "regions": args.regions,
                        "dim": args.dim, "data_dir": data["data_dir"]}
                print(f"[loader] {dtype} features, {workers} workers ...", file=sys.stderr, flush=True)
                out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)],
                                     text=True, stdout=subprocess.PIPE)
                lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
                if out.returncode != 0 or not lines:
                    raise SystemExit(f"loader setting {spec} failed (exit {out.returncode})")
                results.append(json.loads(lines[-1][len("RESULT "):]))
    needed = args.batch / (args.gpu_step_ms / 1000)
    print(f"HMD layout, {args.samples} samples of {args.regions} x {args.dim} features, batch {args.batch}\n")
    print("| stored features | workers | samples/s | batch feature dtype |\n|---|---|---|---|")
    for r in results:
        print(f"| {r['dtype']} | {r['workers']} | {r['samples_per_s']:,.0f} | {r['batch_dtype']} |")
    print(f"\nA GPU at {args.gpu_step_ms:.0f} ms per batch-{args.batch} step needs {needed:,.0f} samples/s.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
