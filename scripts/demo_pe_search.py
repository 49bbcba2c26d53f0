#!/usr/bin/env python
"""Rerun the demo's PE search: PE configurations on the demo's memes, judged on dev_seen AUROC only.

    .venv/bin/python scripts/demo_pe_search.py [--out logs/demo] [--only NAME ...] [--cap 600] [--threads 1]

Each configuration is demo_base.yaml + BASELINE + its overrides below, trained by the real `mmf_run` with the
demo's seed, threads and batch size, one run at a time, under <out>/pe_search/. No test split is read: the choice
(written into projects/visual_bert_pe/demo_pe.yaml by hand) is made on dev_seen; the demo then reports the test
splits once.
Early stopping is off by default (cap updates each, the same budget for every configuration); `--patience N` judges
them under the demo's own rules instead (early stopping on dev_seen AUROC). A finished configuration is reused on
rerun; two processes (one per core) may share one results.json. Prints one markdown row per configuration
(docs/demo-pe-search.md holds them).
"""
import argparse
import copy
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mmf_pe import REPO_ROOT  # noqa: E402

PE = "model_config.visual_bert_pe.pe"
PAPER, LORA = f"{PE}.paper", f"{PE}.lora"  # each method's own settings node
PROJECTION = "model_config.visual_bert_pe.train_visual_projection"
# Every configuration is demo_base.yaml + this (the demo's PE recipe before the search) + its own overrides, so the
# search does not move when demo_pe.yaml is changed to its choice.
BASELINE = {"model_config.visual_bert_pe.training_mode": "pe", "training.experiment_name": "demo_pe_search",
            f"{PE}.method": "paper", f"{PAPER}.reduction_factor": 10, PROJECTION: True,
            "optimizer.params.lr": 1.0e-3, "scheduler.params.num_warmup_steps": 60}
# name -> (what it tries, {dotted key: value} on top of BASELINE). Order = the order they were tried.
CONFIGS = {
    "paper-lr1e-3": ("the paper's adapter, lr 1e-3, warm-up 60 (the demo's earlier recipe)", {}),
    "paper-lr3e-3": ("lr 3e-3", {"optimizer.params.lr": 3.0e-3}),
    "paper-lr3e-3-ln": ("lr 3e-3 + LayerNorms train",
                        {"optimizer.params.lr": 3.0e-3, f"{PAPER}.train_layer_norms": True}),
    "paper-lr1e-2": ("lr 1e-2", {"optimizer.params.lr": 1.0e-2}),
    "houlsby-lr3e-3": ("Houlsby (attention + FFN adapters, LNs train), lr 3e-3",
                       {"optimizer.params.lr": 3.0e-3, f"{PE}.method": "houlsby"}),
    "pfeiffer-lr3e-3": ("Pfeiffer (FFN adapter only), lr 3e-3",
                        {"optimizer.params.lr": 3.0e-3, f"{PE}.method": "pfeiffer"}),
    "lora-r8-lr3e-3": ("LoRA r 8 on query/value, lr 3e-3", {"optimizer.params.lr": 3.0e-3, f"{PE}.method": "lora"}),
    "paper-lr3e-3-top3": ("lr 3e-3, adapters in the top 3 of 6 layers only",
                          {"optimizer.params.lr": 3.0e-3, f"{PAPER}.top_k_layers": 3}),
    "paper-lr3e-3-noproj": ("lr 3e-3, visual projection frozen (random)",
                            {"optimizer.params.lr": 3.0e-3, PROJECTION: False}),
    "paper-lr3e-3-warm0": ("lr 3e-3, no warm-up",
                           {"optimizer.params.lr": 3.0e-3, "scheduler.params.num_warmup_steps": 1}),
    "lora-r16-all-lr3e-3": ("LoRA r 16 on query/key/value and both FFN linears, lr 3e-3",
                            {"optimizer.params.lr": 3.0e-3, f"{PE}.method": "lora", f"{LORA}.rank": 16,
                             f"{LORA}.target_modules": ["attention.self.query", "attention.self.key",
                                                      "attention.self.value", "intermediate.dense",
                                                      "output.dense"]}),
    "paper-rf2-lr3e-3": ("lr 3e-3, reduction factor 2 (192 units)",
                         {"optimizer.params.lr": 3.0e-3, f"{PAPER}.reduction_factor": 2}),
    "paper-lr1e-3-ln": ("lr 1e-3 + LayerNorms train", {f"{PAPER}.train_layer_norms": True}),
    "paper-lr3e-4": ("lr 3e-4", {"optimizer.params.lr": 3.0e-4}),
    # Second round, under the demo's own rules (cap 1500, early stopping with patience 500: --cap 1500 --patience 500)
    "paper-lr3e-4-ln": ("lr 3e-4 + LayerNorms train",
                        {"optimizer.params.lr": 3.0e-4, f"{PAPER}.train_layer_norms": True}),
    "houlsby-lr3e-4": ("Houlsby (attention + FFN adapters, LNs train), lr 3e-4",
                       {"optimizer.params.lr": 3.0e-4, f"{PE}.method": "houlsby"}),
    "houlsby-lr1e-3": ("Houlsby (attention + FFN adapters, LNs train), lr 1e-3", {f"{PE}.method": "houlsby"}),
    "lora-r8-lr1e-3": ("LoRA r 8 on query/value, lr 1e-3", {f"{PE}.method": "lora"}),
    "paper-rf2-lr3e-4": ("lr 3e-4, reduction factor 2 (192 units)",
                         {"optimizer.params.lr": 3.0e-4, f"{PAPER}.reduction_factor": 2}),
    "paper-lr1e-4": ("lr 1e-4 (Full's rate)", {"optimizer.params.lr": 1.0e-4}),
}


def nested(dotted):
    """{"a.b.c": v} -> {"a": {"b": {"c": v}}}."""
    out = {}
    for key, value in dotted.items():
        node = out
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def merged(base, extra):
    result = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


def summarise(save_dir):
    """Best dev_seen AUROC, its update, the first update at >= 0.8, updates run, trained parameters, s/update."""
    from mmf_pe.demo.runs import read_stamp
    from mmf_pe.reporting import load_run
    from mmf_pe.tracking.jsonl import find_metrics_file

    run = load_run(find_metrics_file(save_dir), save_dir)
    points = [(step, m["roc_auc"]) for step, m in run.curve if m.get("roc_auc") is not None]
    best_step, best = max(points, key=lambda p: p[1])
    first = next((step for step, value in points if value >= 0.8), None)
    return {"best_auroc": round(best, 4), "best_update": best_step, "first_update_at_0.8": first,
            "updates": points[-1][0], "trained": (run.info.get("params") or {}).get("trained"),
            "seconds_per_update": read_stamp(save_dir).get("seconds_per_update")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(REPO_ROOT, "logs", "demo"), help="the demo's folder (data)")
    parser.add_argument("--only", nargs="+", choices=list(CONFIGS), help="these configurations only")
    parser.add_argument("--cap", type=int, default=600, help="updates per configuration")
    parser.add_argument("--threads", default="1", help="threads per run (fixed)")
    parser.add_argument("--patience", type=int, help="early stopping on dev_seen AUROC as the demo does (default: off)")
    args = parser.parse_args(argv)

    from mmf_pe.demo.pipeline import PROJECT, log, prepare_data, run_overrides, settings_for, train

    settings = settings_for("demo", updates=args.cap, threads=args.threads)
    out = os.path.abspath(args.out)
    data_dir = prepare_data(out, settings)["data_dir"]
    search_dir = os.path.join(out, "pe_search")
    results_path = os.path.join(search_dir, "results.json")
    results = json.load(open(results_path)) if os.path.exists(results_path) else {}
    base = run_overrides("pe", settings, settings.seeds[0])
    base["training"]["early_stop"]["enabled"] = args.patience is not None
    if args.patience is not None:
        base["training"]["early_stop"]["patience"] = args.patience
    base["scheduler"]["params"].pop("num_warmup_steps")  # the YAML's warm-up unless a configuration sets one
    for name in args.only or list(CONFIGS):
        what, dotted = CONFIGS[name]
        label = name if args.cap == 600 else f"{name}@{args.cap}"  # another budget is another entry, not a rerun
        label += f"-p{args.patience}" if args.patience is not None else ""
        save_dir = train(search_dir, label.replace("@", "-cap"), settings, data_dir, settings.seeds[0],
                         int(args.threads),
                         project_config=os.path.join(PROJECT, "demo_base.yaml"),
                         overrides=merged(base, nested({**BASELINE, **dotted})))
        entry = {"what": what, "overrides": dotted, "cap": args.cap, "patience": args.patience,
                 **summarise(save_dir)}
        os.makedirs(search_dir, exist_ok=True)
        # re-read: another search process (another core) may have added its rows meanwhile
        results = json.load(open(results_path)) if os.path.exists(results_path) else {}
        results[label] = entry
        with open(results_path, "w") as f:
            json.dump(results, f, indent=2)
        log(f"pe search {label}: {results[label]}")
    print("| Configuration | What | Updates | Trained params | Best dev_seen AUROC | at update | first >= 0.8 | "
          "s / update |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['what']} | {r['cap']} | {r['trained']:,} | {r['best_auroc']:.3f} | {r['best_update']} | "
              f"{r['first_update_at_0.8'] or '—'} | {r['seconds_per_update'] or '—'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
