#!/usr/bin/env python
"""Samples/s of the real MMF input pipeline (a script, not a test): LMDB features -> processors -> collate.

    .venv/bin/python scripts/benchmark_loader.py [--datasets hmd mmh] [--samples 256] [--workers 0 1 2]
                                                 [--dtypes float32 float16] [--gpu-step-ms 50]

Generates an HMD-layout dataset (`mmf_pe/testing/tiny_hmd.py`) and an MMH-layout one (a miniature MMHS150K tree,
converted by `mmf_pe convert-mmh`, region features keyed by tweet id, as the MMH tests make them) with 100 x 2048
region features per sample, stored fp32 or fp16, and 128-token texts. Each row builds the `mmf_pe` trainer as
`mmf_run` does (rc10's dataset, its LMDB reader through our safe reader, the BERT text processor, the collate and our
global-order sampler) in a fresh process and reads one epoch of its `train_loader`: the first batch (worker start-up)
is not timed. CPU ms / sample counts the training process and its workers over the same timed batches (on a shared
CPU the wall rate depends on what else runs; the CPU cost does not). Then, in one process on HMD: the per-sample
cost of each stage, this checkout's code against rc10's (the compatibility layer's originals), which is where the
time goes. All rows in one run; the output is markdown (paste-ready for docs/benchmarks.md).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

SPLITS = {"dev_seen": 16, "dev_unseen": 8, "test_seen": 8, "test_unseen": 8}
TEXT_TOKENS = 128  # the paper's max_seq_length
# The model step on this CPU from scripts/benchmark_pe.py (docs/benchmarks.md, "Mixed precision": batch 8, bf16,
# CPU seconds per step): samples/s = 8 / step.
MODEL_STEPS = {"Full, bf16": 8 / 8.09, "paper PE, bf16": 8 / 5.59, "FC, bf16": 8 / 3.31}


def make_hmd(root, samples, regions, dim, dtype):
    from mmf_pe.testing.tiny_hmd import make_tiny_hmd

    return make_tiny_hmd(os.path.join(root, f"hmd_{dtype}"), feature_dim=dim, num_regions=regions,
                         splits={"train": samples, **SPLITS}, feature_dtype=dtype)["data_dir"]


def make_mmh(root, samples, regions, dim, dtype):
    """A converted miniature MMHS150K (its deliberate bad inputs drop a few training tweets) + a feature LMDB."""
    import contextlib
    import io

    import numpy as np

    from mmf_pe.data.lmdb_features import LMDBFeatureWriter
    from mmf_pe.datasets.mmh import convert
    from mmf_pe.testing.tiny_hmd import write_tokenizer
    from mmf_pe.testing.tiny_mmh import make_tiny_mmhs150k

    base = os.path.join(root, f"mmh_{dtype}")
    data_dir = os.path.join(base, "data")
    make_tiny_mmhs150k(os.path.join(base, "MMHS150K"), sizes={"train": samples, "val": 16, "test": 16}, image_size=16)
    with contextlib.redirect_stdout(io.StringIO()):
        if convert.main(["--src", base, "--data-dir", data_dir, "--workers", "2"]) != 0:
            raise SystemExit("convert-mmh failed on the generated MMHS150K tree")
    write_tokenizer(os.path.join(data_dir, "tokenizer"))
    defaults = os.path.join(data_dir, "datasets", "mmh", "defaults")
    rng = np.random.default_rng(0)
    with LMDBFeatureWriter(os.path.join(defaults, "features", "regions.lmdb")) as writer:
        for split in ("train", "val", "test"):
            with open(os.path.join(defaults, "annotations", f"{split}.jsonl"), encoding="utf-8") as f:
                for line in f:
                    tweet_id = json.loads(line)["id"]
                    features = rng.normal(size=(regions, dim)).astype(dtype)
                    writer.put(tweet_id, {"features": features, "bbox": np.zeros((regions, 4), np.float32),
                                          "num_boxes": regions, "image_width": 64, "image_height": 64})
    return data_dir


MAKERS = {"hmd": make_hmd, "mmh": make_mmh}
DATASETS = {"hmd": ("hateful_memes", "hmd_fc.yaml"), "mmh": ("mmh", "mmh_fc.yaml")}


def build_trainer(spec):
    from mmf_pe import REPO_ROOT
    from mmf_pe.experiments.evaluate import _build_trainer

    name, project_yaml = DATASETS[spec["dataset"]]
    os.environ["MMF_DATA_DIR"] = spec["data_dir"]
    project = os.path.join(REPO_ROOT, "projects", "visual_bert_pe")
    config = os.path.join(spec["data_dir"], "loader.yaml")
    with open(config, "w") as f:
        f.write(f"includes:\n  - {project}/{project_yaml}\n  - {project}/tiny.yaml\n")
    return _build_trainer([
        f"config={config}", "model=visual_bert_pe", f"dataset={name}", "run_type=train",
        f"env.save_dir={spec['data_dir']}/save", "training.wandb.enabled=False", f"training.batch_size={spec['batch']}",
        f"training.num_workers={spec['workers']}", f"dataset_config.{name}.max_features={spec['regions']}",
        f"dataset_config.{name}.processors.text_processor.params.max_seq_length={TEXT_TOKENS}",
        f"model_config.visual_bert_pe.visual_embedding_dim={spec['dim']}", "training.seed=1"])


def _proc_cpu_s(pid):
    """utime + stime of a live process (clock ticks -> s)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu_s():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_setting(spec):
    """One setting in this fresh process: samples/s and CPU per sample over the batches after the first."""
    if spec.get("sharing_strategy"):
        import torch.multiprocessing

        torch.multiprocessing.set_sharing_strategy(spec["sharing_strategy"])
    trainer = build_trainer(spec)
    children_before = _children_cpu_s()
    loader = iter(trainer.train_loader)
    first = next(loader)
    workers = [w.pid for w in getattr(loader, "_workers", [])]
    workers_at_first = sum(_proc_cpu_s(pid) for pid in workers)
    main_cpu, start = time.process_time(), time.perf_counter()
    count = 0
    for batch in loader:
        count += len(batch["id"])
    seconds = time.perf_counter() - start
    main_cpu = time.process_time() - main_cpu
    del loader  # workers are joined at the end of the epoch; their CPU time is now in RUSAGE_CHILDREN
    worker_cpu = _children_cpu_s() - children_before - workers_at_first if workers else 0.0
    return {**spec, "samples": count, "seconds": seconds, "samples_per_s": count / seconds,
            "cpu_ms_per_sample": 1000 * (main_cpu + worker_cpu) / count,
            "main_cpu_ms_per_sample": 1000 * main_cpu / count, "worker_cpu_ms_per_sample": 1000 * worker_cpu / count,
            "batch_dtype": str(first["image_feature_0"].dtype).replace("torch.", "")}


def stage_costs(spec, reps=None):
    """Per-sample CPU microseconds of each stage on the dataset, this checkout's code against rc10's originals."""
    import io

    import numpy as np
    import torch
    from mmf.common.batch_collator import BatchCollator
    from mmf.datasets.databases.readers.feature_readers import LMDBFeatureReader

    from mmf_pe.data.lmdb_features import load_record
    from mmf_pe.data.loader import pad_features
    from mmf_pe.trainers.loading import SampleListCollator
    from mmf_pe.utils import safe_pickle

    trainer = build_trainer(spec)
    dataset = trainer.dataset_loader.train_dataset.datasets[0]
    dataset[0]  # opens the LMDB
    reader = dataset.features_db.feature_readers[0].feat_reader
    infos = [dataset.preprocess_sample_info(dict(dataset.annotation_db[i])) for i in range(len(dataset))]
    paths = [os.path.join(reader.db_path, info["feature_path"]) for info in infos]
    keys = [info["feature_path"].split(".npy")[0].encode() for info in infos]
    records = [reader._load(path) for path in paths]
    samples = [dataset[i] for i in range(len(dataset))]
    n = reps or len(dataset)
    batch = spec["batch"]
    collator = SampleListCollator(dataset.dataset_name, "train")
    rc10_collator = BatchCollator(dataset.dataset_name, "train")

    def cost(fn, count=n, per=1):
        start = time.process_time()
        for i in range(count):
            fn(i)
        return 1e6 * (time.process_time() - start) / (count * per)

    def raw(i, fn):
        with reader.env.begin(buffers=True) as txn:
            return fn(txn.get(keys[i]), i)

    def rc10_pad(i):  # rc10's padding (PaddedFasterRCNNFeatureReader.read): a new float32 array per record
        features = records[i]["features"]
        padded = np.zeros((spec["regions"], features.shape[1]), dtype=np.float32)
        padded[: features.shape[0]] = features[: spec["regions"]]
        return torch.from_numpy(padded)

    rows = [
        ("LMDB get (a buffer into the map)", cost(lambda i: raw(i, lambda b, i: None)), None),
        ("safe unpickle of the record (from the buffer)",
         cost(lambda i: raw(i, lambda b, i: load_record(b, reader.db_path, keys[i]))),
         cost(lambda i: raw(i, lambda b, i: safe_pickle._RecordUnpickler(io.BytesIO(bytes(b)), "").load()))),
        ("padding to max_features", cost(lambda i: pad_features(records[i]["features"], spec["regions"])),
         cost(rc10_pad)),
        ("feature read total (get + unpickle + pad)", cost(lambda i: reader.read(paths[i])),
         cost(lambda i: LMDBFeatureReader.read.__wrapped__(reader, paths[i]))),
        ("text processor (BERT tokenizer, 128 tokens)",
         cost(lambda i: dataset.text_processor({"text": infos[i]["text"]})), None),
        ("dataset[i] (all of the above + Sample)", cost(lambda i: dataset[i]), None),
        (f"collate (batch {batch}, per sample)",
         cost(lambda b: collator(samples[b * batch:(b + 1) * batch]), count=n // batch, per=batch),
         cost(lambda b: rc10_collator(samples[b * batch:(b + 1) * batch]),
              count=n // batch, per=batch)),
    ]
    rows += in_a_worker(dataset, collator, batch)
    return {"dtype": spec["dtype"], "rows": rows}


class _TimedDataset:
    """The dataset, each sample carrying the CPU seconds its `dataset[i]` took (the reading thread's)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        start = time.thread_time()
        sample = self.dataset[index]
        sample["getitem_cpu_s"] = time.thread_time() - start
        return sample


def in_a_worker(dataset, collator, batch):
    """dataset[i] and the collate as one DataLoader worker runs them (its first pass over the data, the batch built in
    shared memory): CPU µs per sample of the worker's main thread (its queue feeder and fd-sharing threads run beside
    it). rc10's collate has no such row: its batch is copied into shared memory only when sent, outside the collate."""
    from torch.utils.data import DataLoader

    def timed_collate(samples):
        start = time.thread_time()
        out = collator(samples)
        out["collate_cpu_s"] = time.thread_time() - start
        return out

    getitem = collate = count = 0.0
    for out in DataLoader(_TimedDataset(dataset), batch_size=batch, num_workers=1, collate_fn=timed_collate):
        getitem += sum(out["getitem_cpu_s"])
        collate += out["collate_cpu_s"]
        count += len(out["getitem_cpu_s"])
    return [("dataset[i] in a worker (its first pass)", 1e6 * getitem / count, None),
            (f"collate in a worker (batch {batch} in shared memory, per sample)", 1e6 * collate / count, None)]


def _run_child(args):
    out = subprocess.run([sys.executable, os.path.abspath(__file__), *args], text=True, stdout=subprocess.PIPE)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"loader benchmark child {args} failed (exit {out.returncode})")
    return json.loads(lines[-1][len("RESULT "):])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["hmd", "mmh"], choices=sorted(MAKERS))
    parser.add_argument("--samples", type=int, default=256, help="training samples per dataset")
    parser.add_argument("--regions", type=int, default=100)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float16"], choices=["float32", "float16"])
    parser.add_argument("--gpu-step-ms", type=float, default=50.0, help="a GPU step time to compare the rates with")
    parser.add_argument("--no-stages", action="store_true", help="skip the per-stage cost table")
    parser.add_argument("--sharing-strategy", choices=["file_descriptor", "file_system"],
                        help="torch.multiprocessing's sharing strategy for worker batches (default: torch's)")
    parser.add_argument("--json", help="also write the raw measurements here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--stages", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(run_setting(json.loads(args.worker))))
        return 0
    if args.stages:
        print("RESULT " + json.dumps(stage_costs(json.loads(args.stages))))
        return 0
    results, stages = [], []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="mmf_pe_loader_") as root:
        for dataset in args.datasets:
            for dtype in args.dtypes:
                print(f"[loader] generating {dataset} data, {dtype} features ...", file=sys.stderr, flush=True)
                data_dir = MAKERS[dataset](root, args.samples, args.regions, args.dim, dtype)
                spec = {"dataset": dataset, "dtype": dtype, "batch": args.batch, "regions": args.regions,
                        "dim": args.dim, "data_dir": data_dir, "sharing_strategy": args.sharing_strategy}
                for workers in args.workers:
                    print(f"[loader] {dataset}, {dtype} features, {workers} workers ...", file=sys.stderr, flush=True)
                    results.append(_run_child(["--worker", json.dumps({**spec, "workers": workers})]))
                if dataset == "hmd" and not args.no_stages:
                    print(f"[loader] stage costs, {dtype} ...", file=sys.stderr, flush=True)
                    stages.append(_run_child(["--stages", json.dumps({**spec, "workers": 0})]))
    load_after = os.getloadavg()
    needed = args.batch / (args.gpu_step_ms / 1000)
    from mmf_pe.utils.precision import hardware_header

    print(hardware_header("cpu"))
    print(f"{args.samples} training samples per dataset (MMH: fewer, the generated tree's bad tweets are skipped), "
          f"{args.regions} x {args.dim} region features, {TEXT_TOKENS}-token texts, batch {args.batch}; "
          f"{os.cpu_count()} CPUs, load average {load_before[0]:.1f} before / {load_after[0]:.1f} after the run.\n")
    print(f"| dataset | stored features | workers | samples/s | CPU ms / sample (trainer + workers) | batch features | "
          f"x GPU need ({needed:,.0f}/s) |\n|---|---|---:|---:|---:|---|---:|")
    for r in results:
        split = f" ({r['main_cpu_ms_per_sample']:.2f} + {r['worker_cpu_ms_per_sample']:.2f})" if r["workers"] else ""
        print(f"| {r['dataset'].upper()} | {r['dtype']} | {r['workers']} | {r['samples_per_s']:,.0f} | "
              f"{r['cpu_ms_per_sample']:.2f}{split} | {r['batch_dtype']} | {r['samples_per_s'] / needed:.1f} |")
    print(f"\nA GPU at {args.gpu_step_ms:.0f} ms per batch-{args.batch} step needs {needed:,.0f} samples/s. "
          "The model step on this CPU (scripts/benchmark_pe.py, docs/benchmarks.md, bert-base batch 8): "
          + ", ".join(f"{name} {rate:.1f} samples/s" for name, rate in MODEL_STEPS.items()) + ".")
    for table in stages:
        print(f"\nWhere a sample's time goes (HMD, {table['dtype']} stored; CPU µs per sample, one process, "
              "warm page cache; before = rc10, and the safe reader before this change):\n\n"
              "| stage | now | before |\n|---|---:|---:|")
        for name, ours, rc10 in table["rows"]:
            print(f"| {name} | {ours:,.0f} | {'' if rc10 is None else f'{rc10:,.0f}'} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": results, "stages": stages}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
