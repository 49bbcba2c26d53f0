"""`mmf_pe evaluate RUN_DIR [--splits ...] [overrides]`: a run's best checkpoint on its dataset's test splits.

The default splits are the dataset config's `test_splits` (HMD: test_seen and test_unseen, beside the configured test
annotations; see its YAML), or else the configured `test`.
Per split it appends a `test` event to the run's metrics.jsonl and writes `predictions/<split>.csv` beside it.
MMF runs in this process from the run's saved config.yaml, in a scratch save dir (the run's files stay as they are).
"""
import argparse
import json
import os
import shutil
import tempfile
from collections import OrderedDict

from omegaconf import OmegaConf

CHECKPOINTS = {"best": "best.ckpt", "current": "current.ckpt"}


class EvaluateError(RuntimeError):
    pass


def _as_list(value):
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def test_splits(config, dataset, requested=None):
    """OrderedDict split name -> annotation paths (relative to the dataset's data_dir, as MMF's config has them).

    `requested`: names of the default splits, or `name:path[,path]` entries for other annotation files."""
    dataset_config = config.dataset_config[dataset]
    configured = _as_list(dataset_config.annotations.get("test", None))
    defaults = OrderedDict()
    named = dataset_config.get("test_splits", None)  # split name -> annotation file beside the configured test one
    if named and configured:
        folder = os.path.dirname(configured[0])
        for name, filename in named.items():
            defaults[name] = [os.path.join(folder, filename)]
    elif configured:
        defaults["test"] = configured
    if not requested:
        return defaults
    chosen = OrderedDict()
    for entry in requested:
        if ":" in entry:
            name, paths = entry.split(":", 1)
            chosen[name] = paths.split(",")
        elif entry in defaults:
            chosen[entry] = defaults[entry]
        else:
            raise EvaluateError(f"unknown split {entry!r} for {dataset}; known: {', '.join(defaults) or 'none'} "
                                "(or give name:annotations.jsonl)")
    return chosen


def _build_trainer(opts):
    """An rc10 trainer as mmf_cli.run builds it (single process), loaded."""
    from mmf_pe.compat import install

    install()
    from mmf.common.registry import registry
    from mmf.utils.build import build_config, build_trainer
    from mmf.utils.configuration import Configuration
    from mmf.utils.env import set_seed, setup_imports
    from mmf.utils.logger import Logger

    setup_imports()
    args = argparse.Namespace(opts=opts, config_override=None)
    configuration = Configuration(args)
    configuration.args = args
    config = configuration.get_config()
    config.training.seed = set_seed(config.training.seed)
    config = build_config(configuration)
    if registry.get("writer", no_warning=True) is None:  # one Logger per process: each adds log handlers
        registry.register("writer", Logger(config, name="mmf.train"))
    trainer = build_trainer(config)
    trainer.load()
    return trainer


def _read_checkpoint(checkpoint):
    """(state, family) of a checkpoint (read once, safely: the exporter's reader, tensors memory-mapped)."""
    from mmf_pe.experiments.export import read_checkpoint
    from mmf_pe.models.contract import family_of_run

    try:
        state, config = read_checkpoint(checkpoint)
    except (ValueError, FileNotFoundError) as error:
        raise EvaluateError(str(error)) from None
    return state, family_of_run(config)


def _checkpoint_keys(checkpoint):
    """The model keys a checkpoint holds, as its model family reads them."""
    state, family = _read_checkpoint(checkpoint)
    return family.checkpoint_keys(state)


def _checkpoint_options(checkpoint, saved):
    """Options the checkpoint's family needs to score it (e.g. a checkpoint of the paper's patched setup is scored
    as visual_bert_pe PE mode, method paper: `model=...` first), or [] for a plain checkpoint."""
    state, family = _read_checkpoint(checkpoint)
    return family.evaluate_options(state, saved)


def _check_loaded(trainer, saved_keys, checkpoint):
    """rc10 loads checkpoints with strict=False: refuse to score a model whose weights did not all come from it."""
    model = trainer.model.module if hasattr(trainer.model, "module") else trainer.model
    missing = [k for k in model.state_dict() if k not in saved_keys]
    if missing:
        raise EvaluateError(f"{checkpoint} lacks {len(missing)} of the model's weights (e.g. {missing[:3]}); "
                            "was it written by this run's model?")


def evaluate_run(run_dir, splits=None, checkpoint="best", overrides=(), batch_size=None, text_source="given",
                 image_root=None):
    """Evaluate one run; returns {split: metrics}. `overrides` are MMF `key=value` options (e.g. env.data_dir=...).
    `text_source="ocr"`: the splits' text read from their images (`<split>_ocr`, mmf_pe/experiments/ocr_text.py).
    (Options are rc10-parsed: booleans must be written True/False; `false` would stay a truthy string.)"""
    from mmf_pe.reporting.runs import load_run
    from mmf_pe.tracking.jsonl import JsonlTracker, find_metrics_file
    from mmf_pe.tracking.session import evaluation_metrics, meter_metrics, write_predictions

    config_path = os.path.join(run_dir, "config.yaml")
    checkpoint_path = os.path.join(run_dir, CHECKPOINTS.get(checkpoint, checkpoint))
    for path, what in ((config_path, "the run's config"), (checkpoint_path, f"the {checkpoint} checkpoint")):
        if not os.path.isfile(path):
            raise EvaluateError(f"{path} not found ({what}); is {run_dir} a finished mmf run's save dir?")
    saved = OmegaConf.load(config_path)
    datasets = [d for d in str(saved.datasets).split(",") if d]
    dataset = datasets[0]
    chosen = test_splits(saved, dataset, splits)
    if not chosen:
        raise EvaluateError(
            f"{config_path}: dataset_config.{dataset}.annotations.test is empty; give --splits name:path")
    data_dir = saved.dataset_config[dataset].get("data_dir", "")
    for name, paths in chosen.items():
        for path in (part for entry in paths for part in entry.split(",")):  # MMF's comma-joined multi-file entry
            if not os.path.isfile(os.path.join(data_dir, path)):
                raise EvaluateError(f"{name}: annotations {os.path.join(data_dir, path)} not found")
    metrics_file = find_metrics_file(run_dir) or os.path.join(run_dir, "logs", "metrics.jsonl")
    log_dir = os.path.dirname(metrics_file)
    if text_source == "ocr":
        from mmf_pe.experiments.ocr_text import ocr_splits

        chosen = ocr_splits(chosen, data_dir, os.path.join(log_dir, "ocr"), image_root)
    run_info = load_run(metrics_file).info if os.path.exists(metrics_file) else {}
    if not run_info:  # a run trained without tracking: give the report what it needs
        run_info = {"event": "run", "schema": 1, "model": saved.model, "dataset": dataset, "datasets": datasets,
                    "seed": saved.training.get("seed", None), "save_dir": os.path.abspath(run_dir)}
        pending_info = run_info
    else:
        pending_info = None
    tracker = JsonlTracker(log_dir)
    saved_keys = _checkpoint_keys(checkpoint_path)
    family_options = _checkpoint_options(checkpoint_path, saved)
    model_name = next((o.split("=", 1)[1] for o in family_options if o.startswith("model=")), saved.model)
    results = OrderedDict()
    for name, paths in chosen.items():
        scratch = tempfile.mkdtemp(prefix="mmf_pe_evaluate_")
        try:
            opts = [f"config={config_path}", f"model={model_name}", f"dataset={saved.datasets}", "run_type=test",
                    f"env.save_dir={scratch}", "env.log_dir=", f"checkpoint.resume_file={checkpoint_path}",
                    "checkpoint.resume=False", "checkpoint.resume_pretrained=False", "checkpoint.reset.optimizer=True",
                    "distributed.init_method=None", "distributed.world_size=1", "training.wandb.enabled=False",
                    "training.tensorboard=False", f"dataset_config.{dataset}.annotations.test={json.dumps(paths)}"]
            opts += [o for o in family_options if not o.startswith("model=")]  # model= is above
            if batch_size:
                opts.append(f"training.batch_size={int(batch_size)}")
            # the forced options come last: a user's env.save_dir must not send rc10's checkpointer into the run
            trainer = _build_trainer(list(overrides) + opts)
            _check_loaded(trainer, saved_keys, checkpoint_path)
            _, meter = trainer.evaluate(trainer.test_loader, use_tqdm=True)
            predictions = trainer.last_predictions
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        metrics, n = evaluation_metrics(meter_metrics(meter, "test", dataset), predictions)
        relative = f"predictions/{name}.csv"
        write_predictions(os.path.join(log_dir, relative), predictions)
        if pending_info:
            tracker.log_event(pending_info)
            pending_info = None
        decision = getattr(trainer, "precision_decision", None)
        tracker.log_event({"event": "test", "step": int(trainer.num_updates), "split": name, "dataset": dataset,
                           "checkpoint": os.path.basename(checkpoint_path), "annotations": paths, "metrics": metrics,
                           "n": n, "predictions": relative, "text_source": text_source,
                           "precision": decision.as_dict() if decision is not None else None})
        results[name] = metrics
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(prog="mmf_pe evaluate", description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    parser.add_argument("run_dirs", nargs="+", help="run save dirs (hold config.yaml and best.ckpt)")
    parser.add_argument("--splits", nargs="+",
                        help="split names (test_seen test_unseen / test) or name:annotations.jsonl")
    parser.add_argument("--checkpoint", default="best", help="best | current | a file name in the run dir")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--text-source", choices=("given", "ocr"), default="given",
                        help="ocr: score each split with the text read from its images (`mmf_pe ocr`, docs/ocr.md)")
    parser.add_argument("--image-root", default=None, help="with --text-source ocr: the folder of the annotations' "
                        "img paths (default: found beside the annotations, as `mmf_pe ocr`)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default=None,
                        help="autocast precision (default: the run's training.precision); auto: bf16 where the "
                        "hardware computes it natively, else fp32 (fp16 on a CUDA GPU without bf16); fp16 needs CUDA")
    argv = list(argv) if argv is not None else None
    overrides = [a for a in (argv or []) if "=" in a and not a.startswith("-")]
    args = parser.parse_args([a for a in (argv or []) if a not in overrides] if argv is not None else None)
    if args.precision:
        overrides += [f"training.precision={args.precision}", "training.fp16=False"]
    for run_dir in args.run_dirs:
        results = evaluate_run(run_dir, args.splits, args.checkpoint, overrides, args.batch_size, args.text_source,
                               args.image_root)
        for split, metrics in results.items():
            shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()
                              if k in ("roc_auc", "accuracy", "binary_f1") and v is not None)
            print(f"{run_dir} {split}: {shown}")
    return 0
