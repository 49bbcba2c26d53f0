#!/usr/bin/env python
"""The drift goals of docs/drift.md, measured (a script, not a test): a static PE adapter vs its `mmf_pe adapt`
successor on a synthetic "new event".

    .venv/bin/python scripts/benchmark_adapt.py [--new-labels 500] [--replay 500] [--budget-minutes 3]
        [--out logs/drift/bench]

Setting: a frozen base of the demo's text-encoder size (MiniLM-L6 dimensions: 384-d, 6 layers; RANDOM weights,
nothing pretrained), the paper's PE adapter, 10 regions x 2048 per meme, 16 tokens. Two periods of labelled memes
(jsonl + feature LMDB): in the old one, hateful memes use one set of words and carry a visual pattern in feature
dims 0-255; the new event brings words and a pattern (dims 256-511) absent from the old period. Benign memes share
words and have no pattern. The static adapter is trained by `mmf_pe adapt` itself from the freshly initialised
adapter on 1000 old-period labels; its successor from the static one on --new-labels new-period labels, replaying
--replay old-period examples, within --budget-minutes. Both are scored by the serve Engine on 500 held-out memes of
each period. Prints a markdown table and the goals' verdicts.
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
SIZE = ["hidden_size=384", "num_hidden_layers=6", "num_attention_heads=12", "intermediate_size=1536",
        "max_position_embeddings=64"]
HOUR_MS = 3_600_000
START_MS = {"old": 1_500_000_000_000, "new": 1_500_000_000_000 + 90 * 24 * HOUR_MS}
HATE = {"old": ["vermin", "filth", "parasites", "savages"], "new": ["plague", "traitors", "swarm", "invaders"]}
BENIGN = ["puppy", "sunset", "birthday", "garden", "holiday", "recipe", "concert", "picnic"]
TEMPLATES = ["look at these {w}", "{w} everywhere today", "so many {w} lol", "when the {w} arrive"]
FEATURE_DIM, REGIONS = 2048, 10


def make_period(folder, name, period, count, seed):
    from mmf_pe.data.lmdb_features import LMDBFeatureWriter
    from mmf_pe.datasets.mmh.snowflake import snowflake_id

    rng = np.random.default_rng(seed)
    offset = 0 if period == "old" else 256
    lines, annotations, lmdb = [], os.path.join(folder, f"{name}.jsonl"), os.path.join(folder, f"{name}.lmdb")
    with LMDBFeatureWriter(lmdb) as writer:
        for index in range(count):
            label = int(rng.integers(0, 2))
            timestamp = START_MS[period] + int(rng.integers(0, 30 * 24 * HOUR_MS))
            tweet_id = snowflake_id(timestamp, sequence=seed * 10_000 + index)
            word = rng.choice(HATE[period] if label else BENIGN)
            features = rng.normal(size=(REGIONS, FEATURE_DIM)).astype(np.float32)
            if label:
                features[: int(rng.integers(2, 5)), offset:offset + 256] += 1.0
            writer.put(tweet_id, {"features": features, "bbox": np.zeros((REGIONS, 4), np.float32),
                                  "num_boxes": REGIONS, "image_width": 64, "image_height": 64})
            lines.append(json.dumps({"id": tweet_id, "text": rng.choice(TEMPLATES).format(w=word), "label": label,
                                     "timestamp_ms": timestamp}) + "\n")
    with open(annotations, "w") as f:
        f.writelines(lines)
    return annotations, lmdb


def build_folder(root):
    from mmf_pe.serve.layout import save_base
    from mmf_pe.testing.tiny_hmd import write_tokenizer
    from mmf_pe.tools.table1 import build_model
    from mmf_pe.tuners.export import save_adapter

    torch.manual_seed(0)
    base = build_model("fc", SIZE)
    folder = os.path.join(root, "served")
    save_base(base, folder, write_tokenizer(os.path.join(root, "tokenizer")), max_seq_length=16)
    model = build_model("pe", SIZE + ["pe.method=paper"])  # the paper adapter's own initialisation
    model.load_state_dict({model.format_state_key(k): v for k, v in base.state_dict().items()}, strict=False)
    initial = os.path.join(root, "initial")
    os.makedirs(initial)
    save_adapter(model, initial)
    return folder, initial


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old-labels", type=int, default=1000)
    parser.add_argument("--new-labels", type=int, default=500)
    parser.add_argument("--replay", type=int, default=500)
    parser.add_argument("--budget-minutes", type=float, default=3.0)
    parser.add_argument("--static-budget-minutes", type=float, default=3.0)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", default=None, help="keep the adapters and data here (default: a temporary folder)")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))

    from mmf_pe.experiments.adapt import adapt
    from mmf_pe.experiments.periods import load_examples, open_adapter, score_examples
    from mmf_pe.metrics.binary import binary_metrics

    root = args.out or tempfile.mkdtemp(prefix="mmf_pe_adapt_bench_")
    os.makedirs(root, exist_ok=True)
    folder, initial = build_folder(root)
    data = os.path.join(root, "data")
    os.makedirs(data, exist_ok=True)
    sets = {"old_train": make_period(data, "old_train", "old", args.old_labels, 1),
            "new_train": make_period(data, "new_train", "new", args.new_labels, 2),
            "old_test": make_period(data, "old_test", "old", 500, 3),
            "new_test": make_period(data, "new_test", "new", 500, 4)}
    static_dir, adapted_dir = os.path.join(folder, "static"), os.path.join(folder, "adapted")
    started = time.perf_counter()
    _, static_config = adapt(initial, *sets["old_train"], static_dir, args.static_budget_minutes, base=folder,
                             epochs=args.epochs)
    static_s = time.perf_counter() - started
    started = time.perf_counter()
    _, adapted_config = adapt(static_dir, *sets["new_train"], adapted_dir, args.budget_minutes,
                              replay=args.replay, old_data=sets["old_train"][0], old_features=sets["old_train"][1],
                              epochs=args.epochs)
    adapted_s = time.perf_counter() - started

    engine, static, _, _ = open_adapter(static_dir)
    _, adapted, _, _ = open_adapter(adapted_dir, engine=engine)
    tests = {name: load_examples(*sets[name]) for name in ("old_test", "new_test")}
    auroc = {}
    for label, version in (("static", static), ("adapted", adapted)):
        for name, examples in tests.items():
            probabilities = score_examples(engine, version, examples)
            auroc[label, name] = binary_metrics(probabilities=probabilities,
                                                targets=[e.label for e in examples])["roc_auc"]
    rows = [("static", static_config, static_s), ("adapted", adapted_config, adapted_s)]
    print("| adapter | labels used | replayed | updates | train s (wall, incl. data load) | train s (loop) | "
          "stopped by | old-period AUROC | new-period AUROC |")
    print("|---|---:|---:|---:|---:|---:|---|---:|---:|")
    for label, config, seconds in rows:
        lineage = config["lineage"]
        print(f"| {label} | {lineage['data']['labels']} | {lineage['replay']['used']} | "
              f"{lineage['training']['updates']} | {seconds:.1f} | {lineage['training']['seconds']:.1f} | "
              f"{lineage['training']['stopped_by']} | {auroc[label, 'old_test']:.4f} | "
              f"{auroc[label, 'new_test']:.4f} |")
    lost = auroc["static", "old_test"] - auroc["static", "new_test"]
    recovered = (auroc["adapted", "new_test"] - auroc["static", "new_test"]) / lost if lost > 0 else float("nan")
    kept = auroc["adapted", "old_test"] / auroc["static", "old_test"]
    print(f"\nstatic lost {lost:.4f} AUROC on the new period; adapted recovered {100 * recovered:.1f} % of it "
          f"(goal >= 90 %): {'met' if recovered >= 0.9 else 'NOT met'}")
    print(f"adapted keeps {100 * kept:.2f} % of the static old-period AUROC (goal >= 98 %): "
          f"{'met' if kept >= 0.98 else 'NOT met'}")
    print(f"labels: {adapted_config['lineage']['data']['labels']} (goal <= 500); adapt wall time {adapted_s:.1f} s "
          f"(goal <= 180 s): {'met' if adapted_s <= 180 else 'NOT met'}")
    print(f"threads: {torch.get_num_threads()}; data and adapters in {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
