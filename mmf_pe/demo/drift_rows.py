"""The demo's drift rows: the static PE adapter and its `mmf_pe adapt` successor on a "new event" period.

Two steps, so the first can run beside training on a core that training leaves idle:

1. `prepare_new_period`: the new event's memes (`mmf_pe.demo.new_event`, under `<out>/drift/data`), their region
   features from the same random-weight detector, standardised with the FIRST period's train statistics (the ones the
   served adapter records), as the server would make them.
2. `drift_stage` (after the adapters are exported): `mmf_pe adapt` from `adapters/pe` on the new period's labels
   (half as many as the first period's train split: 256 in the demo) plus as many replayed first-period train memes,
   for a fixed number of epochs (the budget is only a cap: a rerun computes the same adapter); then both adapters
   scored by the server's Engine on the first period's test_seen and the new period's held-out test split.

Everything is kept under `<out>/drift/`; a rerun with the same static adapter, data and settings reuses it.
"""
import json
import os
import resource
import time

from mmf_pe.utils.io import atomic_write_text

EPOCHS = 8            # over new labels + replay; fixed so that the adapter does not depend on the machine's speed
BUDGET_MINUTES = 3.0  # a cap only (docs/drift.md's goal); the demo's adapt ends well before it
LEARNING_RATE = 1e-3  # `mmf_pe adapt`'s default
MAX_LABELS = 500      # the goal's label budget
STATIC, ADAPTED = "pe", "pe_new_event"


def new_period_splits(settings):
    """Half the first period's train labels (a fresh period has fewer labels), a test split the size of test_seen."""
    half = max(4, settings.splits["train"] // 2 // 4 * 4)
    return {"new_train": min(half, MAX_LABELS // 4 * 4), "new_test": settings.splits["test_seen"]}


def _folders(out):
    root = os.path.join(out, "drift")
    return {"root": root, "data": os.path.join(root, "data"),
            "raw": os.path.join(root, "data", "features", "frcnn_random_weights.lmdb"),
            "features": os.path.join(root, "data", "features", "detectron.lmdb"),
            "adapted": os.path.join(root, ADAPTED), "rows": os.path.join(root, "drift_rows.json")}


def _first_period(paths):
    """The first period's train and test_seen annotations and standardised features (`paths`: memes.make_memes's;
    the features sit in its root's `features/`, pipeline.FEATURES_DIR)."""
    return {"train": os.path.join(paths["annotations"], "train.jsonl"),
            "test": os.path.join(paths["annotations"], "test_seen.jsonl"),
            "features": os.path.join(paths["root"], "features", "detectron.lmdb")}


def prepare_new_period(out, settings, paths, log):
    """New-event memes and standardised features (idempotent; `paths`: the first period's, memes.make_memes).
    Returns {"wall_s", "cpu_s"} of this call (CPU: this thread's), or None when the demo trains no PE run."""
    import torch

    from mmf_pe.demo import new_event
    from mmf_pe.demo.features import extract_random_frcnn

    if STATIC not in settings.runs:
        return None
    started, cpu = time.perf_counter(), time.thread_time()
    folders = _folders(out)
    new_paths = new_event.make_new_event(folders["data"], new_period_splits(settings), settings.image_size,
                                         progress=False)
    done = os.path.join(os.path.dirname(folders["raw"]), ".frcnn_random_weights.complete")
    if not os.path.exists(done):
        log(f"drift: features of the new event's memes ({folders['data']}, 1 thread)")
        before = torch.get_num_threads()
        torch.set_num_threads(1)  # fixed, as every demo process: the features must not depend on the machine's load
        try:
            extract_random_frcnn(new_paths, folders["raw"], settings.num_regions, settings.image_size, progress=False)
        finally:
            torch.set_num_threads(before)
        atomic_write_text(done, "ok\n")
    standardise_like(folders["raw"], folders["features"], _first_period(paths)["features"])
    return {"wall_s": round(time.perf_counter() - started, 1), "cpu_s": round(time.thread_time() - cpu, 1)}


def standardise_like(raw, out, reference):
    """`out` = `raw` z-scored with the mean and std `reference` (a standardised LMDB) recorded: the first period's
    train statistics, which the exported adapters carry and the server applies. Idempotent."""
    import numpy as np

    from mmf_pe.data.lmdb_features import LMDBFeatureWriter, iter_records
    from mmf_pe.tuners.provenance import STATE_FILE

    done = os.path.join(out, ".standardised")
    if os.path.exists(done):
        return out
    with open(os.path.join(reference, STATE_FILE)) as f:
        normalisation = json.load(f)["settings"]["normalisation"]
    mean, std = np.asarray(normalisation["mean"]), np.asarray(normalisation["std"])
    with LMDBFeatureWriter(out, map_size=1 << 32) as writer:
        for key, record in iter_records(raw):
            record["features"] = ((record["features"] - mean) / std).astype(np.float32)
            writer.put(key, record)
    atomic_write_text(done, json.dumps({"source": os.path.abspath(raw), "statistics": os.path.abspath(reference)})
                      + "\n")
    return out


def adapter_identity(folder):
    """An exported adapter as the rows' reuse key sees it: sha256 over its weights and its config without the values
    that only say where files were (absolute paths: the source checkpoint, the feature LMDBs). Its fingerprint hashes
    those paths too, so a copied or moved demo folder would measure the rows again although nothing changed."""
    import hashlib

    from mmf_pe.tuners.export import CONFIG_NAME, WEIGHTS_NAME
    from mmf_pe.utils.hashing import file_sha256

    with open(os.path.join(folder, CONFIG_NAME)) as f:
        config = _without_paths(json.load(f))
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    digest.update(file_sha256(os.path.join(folder, WEIGHTS_NAME)).encode())
    return digest.hexdigest()


def _without_paths(value):
    if isinstance(value, dict):
        return {k: _without_paths(v) for k, v in value.items() if not (isinstance(v, str) and os.path.isabs(v))}
    if isinstance(value, list):
        return [_without_paths(v) for v in value]
    return value


def drift_stage(out, settings, paths, run_dirs, prepared, log, precision="auto", threads=1):
    """Adapt the exported PE adapter (the first seed's PE run, `run_dirs[("pe", seed)]`) to the new event and score
    both on both periods (`paths`: the first period's, memes.make_memes; `prepared`: prepare_new_period's times;
    `precision`: the Engine's, the demo's training.precision).
    Returns the rows ({"rows": [...], "goals": {...}, ...}; also `<out>/drift/drift_rows.json`)."""
    import torch

    from mmf_pe.demo.runs import read_stamp
    from mmf_pe.experiments.adapt import adapt
    from mmf_pe.experiments.periods import data_fingerprint, load_examples, open_adapter
    from mmf_pe.serve.engine import Engine

    folders = _folders(out)
    adapters = os.path.join(out, "adapters")
    pe_run = run_dirs.get((STATIC, settings.seeds[0]))
    if pe_run is None or prepared is None:
        return {"skipped": "no PE run, so no PE adapter to adapt (--runs without pe)"}
    first_period = _first_period(paths)
    static_seconds = read_stamp(pe_run).get("train_seconds")
    new_train = os.path.join(folders["data"], "annotations", "new_train.jsonl")
    new_test = os.path.join(folders["data"], "annotations", "new_test.jsonl")
    started, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        engine = Engine(adapters, precision=precision)
        _, static, _, _ = open_adapter(os.path.join(adapters, STATIC), adapters, engine)
        batch = settings.batch_size
        key = {"static": adapter_identity(os.path.join(adapters, STATIC)), "epochs": EPOCHS, "lr": LEARNING_RATE,
               "batch_size": batch, "budget_minutes": BUDGET_MINUTES, "precision": engine.precision, "threads": threads,
               "splits": new_period_splits(settings)}
        cached = _read_json(folders["rows"])
        if cached.get("key") == key:
            log(f"drift: adapted adapter and its scores reused ({folders['rows']})")
            return dict(cached, prepare=prepared)
        log(f"drift: mmf_pe adapt {STATIC} -> {ADAPTED} on the new event's labels, replaying as many first-period "
            f"memes ({EPOCHS} epochs, {engine.precision})")
        labels = sum(1 for line in open(new_train) if line.strip())
        _, config = adapt(os.path.join(adapters, STATIC), new_train, folders["features"], folders["adapted"],
                          BUDGET_MINUTES, replay=labels, old_data=first_period["train"],
                          old_features=first_period["features"], base=adapters, epochs=EPOCHS, lr=LEARNING_RATE,
                          batch_size=batch, seed=0, engine=engine)
        _, adapted, _, _ = open_adapter(folders["adapted"], adapters, engine)
        periods = {"old": load_examples(first_period["test"], first_period["features"]),
                   "new": load_examples(new_test, folders["features"])}
        auroc = {(name, period): _auroc(engine, version, examples)
                 for name, version in ((STATIC, static), (ADAPTED, adapted))
                 for period, examples in periods.items()}
    finally:
        torch.set_num_threads(before)
    lineage = config["lineage"]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result = {
        "key": key,
        "rows": [
            {"adapter": STATIC, "trained_on": "first period (train split)", "labels": settings.splits["train"],
             "replayed": 0, "updates": None, "train_seconds": static_seconds,
             "old_auroc": auroc[STATIC, "old"], "new_auroc": auroc[STATIC, "new"],
             "fingerprint": static.fingerprint},
            {"adapter": ADAPTED, "trained_on": "new event (new_train) + replay", "labels": lineage["data"]["labels"],
             "replayed": lineage["replay"]["used"], "updates": lineage["training"]["updates"],
             "train_seconds": lineage["training"]["seconds"], "adapt_seconds": lineage["training"]["total_seconds"],
             "stopped_by": lineage["training"]["stopped_by"], "old_auroc": auroc[ADAPTED, "old"],
             "new_auroc": auroc[ADAPTED, "new"], "fingerprint": adapted.fingerprint,
             "parent": lineage["parent"]["fingerprint"], "generation": lineage["generation"]},
        ],
        "test": {"old": {"annotations": first_period["test"], "memes": len(periods["old"]),
                         "fingerprint": data_fingerprint(periods["old"])},
                 "new": {"annotations": new_test, "memes": len(periods["new"]),
                         "fingerprint": data_fingerprint(periods["new"])}},
        "precision": engine.precision, "threads": threads,
        "stage": {"wall_s": round(time.perf_counter() - started, 1),
                  "cpu_s": round(usage.ru_utime + usage.ru_stime - cpu.ru_utime - cpu.ru_stime, 1)},
    }
    result["goals"] = goals(result["rows"])
    atomic_write_text(folders["rows"], json.dumps(result, indent=2) + "\n")
    result["prepare"] = prepared
    log(f"drift: static old/new AUROC {auroc[STATIC, 'old']:.3f}/{auroc[STATIC, 'new']:.3f}, adapted "
        f"{auroc[ADAPTED, 'old']:.3f}/{auroc[ADAPTED, 'new']:.3f} ({lineage['data']['labels']} labels, "
        f"{lineage['training']['seconds']:.0f} s)")
    return result


def goals(rows):
    """docs/drift.md's goals on these rows: share of the static adapter's new-period loss recovered (>= 0.9), share
    of its old-period AUROC kept (>= 0.98), labels (<= 500), adapt seconds (<= 180)."""
    static, adapted = rows
    lost = static["old_auroc"] - static["new_auroc"]
    recovered = (adapted["new_auroc"] - static["new_auroc"]) / lost if lost > 0 else None
    kept = adapted["old_auroc"] / static["old_auroc"] if static["old_auroc"] else None
    return {"lost": lost, "recovered": recovered, "kept": kept,
            "recovered_met": recovered is not None and recovered >= 0.9, "kept_met": kept is not None and kept >= 0.98,
            "labels_met": adapted["labels"] <= MAX_LABELS, "seconds_met": adapted["adapt_seconds"] <= 180}


def _auroc(engine, version, examples):
    from sklearn.metrics import roc_auc_score

    from mmf_pe.experiments.periods import score_examples

    return float(roc_auc_score([e.label for e in examples], score_examples(engine, version, examples)))


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def markdown(drift):
    """The report's section: one row per adapter, then the goals' verdicts."""
    if not drift:
        return "Not run."
    if "skipped" in drift:
        return drift["skipped"] + "."
    lines = ["| Adapter | Trained on | Labels used | Replayed | Updates | Training s | Old period AUROC (test_seen) | "
             "New period AUROC (new_test) |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in drift["rows"]:
        lines.append(f"| `{row['adapter']}` | {row['trained_on']} | {row['labels']} | {row['replayed']} | "
                     f"{row['updates'] if row['updates'] is not None else '—'} | {row['train_seconds']:.0f} | "
                     f"{row['old_auroc']:.3f} | {row['new_auroc']:.3f} |")
    goal = drift["goals"]
    adapted = drift["rows"][1]

    def verdict(met):
        return "met" if met else "**not met**"

    recovered = ("n/a (the static adapter lost nothing)" if goal["recovered"] is None
                 else f"{100 * goal['recovered']:.0f} %")
    lines += ["", f"The static adapter lost {goal['lost']:.3f} AUROC on the new event; the adapted one recovered "
              f"{recovered} of it (goal >= 90 %: {verdict(goal['recovered_met'])}) and kept "
              f"{100 * goal['kept']:.1f} % of the old-period AUROC (goal >= 98 %: {verdict(goal['kept_met'])}), "
              f"with {adapted['labels']} new labels (goal <= 500: {verdict(goal['labels_met'])}) in "
              f"{adapted['adapt_seconds']:.0f} s for the whole `adapt` call (goal <= 180 s: "
              f"{verdict(goal['seconds_met'])}). New event: `memes.NEW_EVENT` (templates, tone words, nouns, figure "
              f"colours and shapes absent from the first period); adapter `drift/{ADAPTED}/` (lineage in its "
              f"adapter_config.json), scored by the server's Engine in {drift['precision']}, "
              f"{drift['test']['old']['memes']} / {drift['test']['new']['memes']} test memes."]
    prepare, stage = drift.get("prepare") or {}, drift["stage"]
    lines += ["", f"Cost: the new event's memes and features {prepare.get('wall_s', 0):.0f} s wall / "
              f"{prepare.get('cpu_s', 0):.0f} s CPU (this invocation; beside training, on a core training leaves), "
              f"adapt + scoring {stage['wall_s']:.0f} s wall / {stage['cpu_s']:.0f} s CPU (when computed; a rerun "
              f"reuses them), {drift['threads']} thread."]
    return "\n".join(lines)
