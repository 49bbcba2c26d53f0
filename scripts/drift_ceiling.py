#!/usr/bin/env python
"""Why the demo's adapted adapter recovers little of the new event (docs/drift.md section 4): a script, not a test.

    .venv/bin/python scripts/drift_ceiling.py [--demo logs/demo] [--dev-size 256] [--dev-seed 2]
        [--adapt 8,1e-3,256 --adapt 10,5e-4,128,1 ...]

Needs a finished `mmf_pe demo` under --demo (its first period, `adapters/pe`, `drift/`). Draws a separate DEV set of
the new event (`new_event.make_new_event` with another generator seed, under `<demo>/drift_dev/`; never the
reported `new_test`), extracts its features like the demo (1 thread) and prints:

1. the feature-space ceiling: a logistic probe for the figure's warmth (the image half of the label rule) on the
   mean of each meme's standardised region features, fitted on the first period's train + `new_train` (the labels
   `adapt` may use), scored on new_dev and new_test; per new colour its mean P(warm); and the label AUROC of a
   reader that knows each caption's tone exactly and takes warmth from the probe (`tone XOR warmth`). No adapter on
   these features reads warmth better than such a probe unless it finds what the probe misses, so this bounds what
   adaptation can recover;
2. per new colour and label, the mean P(hate) of the static and adapted adapters on new_train and new_dev (is a
   colour under-fitted, or fitted on the labels and lost on held-out memes?);
3. for each --adapt EPOCHS,LR,REPLAY[,SEED]: `mmf_pe adapt` from `adapters/pe` on all of `new_train` (256 labels)
   with that many replayed first-period train memes, scored on new_dev and the first period's dev_seen: the dev
   protocol for choosing `adapt`'s settings (never the test splits).
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
COLOURS = ("yellow", "pink", "green", "mint")


def _key(meme_id):
    return f"{meme_id:05d}"


def _pooled(factors, features):
    """The mean of each meme's standardised region features (memes without features are an error)."""
    return np.stack([features[_key(f["id"])].mean(0) for f in factors])


def _load(root, features_dir):
    from mmf_pe.data.lmdb_features import iter_records

    with open(os.path.join(root, "factors.jsonl")) as f:
        factors = [json.loads(line) for line in f if line.strip()]
    features = {key: record["features"] for key, record in iter_records(os.path.join(features_dir, "detectron.lmdb"))}
    return factors, features


def make_dev(demo, size, seed):
    """The dev set's annotations and standardised features (idempotent)."""
    from mmf_pe.demo import new_event
    from mmf_pe.demo.drift_rows import standardise_like
    from mmf_pe.demo.features import extract_random_frcnn

    folder = os.path.join(demo, "drift_dev")
    paths = new_event.make_new_event(folder, {"new_dev": size}, 128, seed=seed, progress=False)
    raw = os.path.join(folder, "features", "frcnn_random_weights.lmdb")
    done = os.path.join(folder, "features", ".extracted")
    if not os.path.exists(done):
        torch.set_num_threads(1)
        extract_random_frcnn(paths, raw, 10, 128, progress=False)
        open(done, "w").write("ok\n")
    standardise_like(raw, os.path.join(folder, "features", "detectron.lmdb"), _first(demo)["features"])
    return folder


def _first(demo):
    root = os.path.join(demo, "data", "datasets", "hateful_memes", "defaults")
    return {"root": root, "features": os.path.join(root, "features", "detectron.lmdb"),
            "annotations": os.path.join(root, "annotations")}


def probe_ceiling(demo, dev):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    first = _first(demo)
    old, old_x = _load(first["root"], os.path.dirname(first["features"]))
    new, new_x = _load(os.path.join(demo, "drift", "data"), os.path.join(demo, "drift", "data", "features"))
    dev_f, dev_x = _load(dev, os.path.join(dev, "features"))
    fit = [f for f in old if f["split"] == "train"] + [f for f in new if f["split"] == "new_train"]
    xs = {**old_x, **new_x}
    probe = LogisticRegression(C=1.0, max_iter=5000).fit(_pooled(fit, xs), [f["warmth"] for f in fit])
    print("| Split | Warmth AUROC | P(warm): " + " | ".join(COLOURS) + " | Label AUROC, exact tone + probe warmth |")
    print("|---|---:|" + "---:|" * len(COLOURS) + "---:|")
    for name, factors, features in (("new_dev", dev_f, dev_x),
                                     ("new_test", [f for f in new if f["split"] == "new_test"], new_x)):
        warm = probe.predict_proba(_pooled(factors, features))[:, 1]
        tone = np.array([f["tone"] for f in factors])
        reader = np.where(tone == 1, 1 - warm, warm)  # label = tone XOR warmth
        per = [warm[[i for i, f in enumerate(factors) if f["colour"] == c]].mean() for c in COLOURS]
        print(f"| {name} | {roc_auc_score([f['warmth'] for f in factors], warm):.3f} | "
              + " | ".join(f"{p:.2f}" for p in per)
              + f" | {roc_auc_score([f['label'] for f in factors], reader):.3f} |")


def colour_readout(demo, dev, adapters):
    from mmf_pe.experiments.periods import load_examples, open_adapter, score_examples
    from mmf_pe.serve.engine import Engine

    engine = Engine(os.path.join(demo, "adapters"), precision="auto")
    sets = {"new_train": (os.path.join(demo, "drift", "data"), "new_train"), "new_dev": (dev, "new_dev")}
    cells = [f"{c} {label}" for c in COLOURS for label in (0, 1)]
    print("\n| Adapter | Split | " + " | ".join(f"P(hate) {c}" for c in cells) + " |")
    print("|---|---|" + "---:|" * len(cells))
    for adapter in adapters:
        _, version, _, _ = open_adapter(adapter, os.path.join(demo, "adapters"), engine)
        for name, (root, split) in sets.items():
            examples = load_examples(os.path.join(root, "annotations", f"{split}.jsonl"),
                                     os.path.join(root, "features", "detectron.lmdb"))
            colour = {str(f["id"]): f["colour"] for f in _load(root, os.path.join(root, "features"))[0]}
            scores = np.asarray(score_examples(engine, version, examples))
            means = [scores[[i for i, e in enumerate(examples)
                             if colour[e.id] == c and e.label == label]].mean() for c in COLOURS for label in (0, 1)]
            print(f"| {os.path.basename(adapter)} | {name} | " + " | ".join(f"{m:.2f}" for m in means) + " |")


def dev_grid(demo, dev, settings, out):
    from sklearn.metrics import roc_auc_score

    from mmf_pe.experiments.adapt import adapt
    from mmf_pe.experiments.periods import load_examples, open_adapter, score_examples
    from mmf_pe.serve.engine import Engine

    torch.set_num_threads(1)
    first, adapters = _first(demo), os.path.join(demo, "adapters")
    engine = Engine(adapters, precision="auto")
    old = load_examples(os.path.join(first["annotations"], "dev_seen.jsonl"), first["features"])
    new = load_examples(os.path.join(dev, "annotations", "new_dev.jsonl"),
                        os.path.join(dev, "features", "detectron.lmdb"))

    def auroc(version, examples):
        return roc_auc_score([e.label for e in examples], score_examples(engine, version, examples))

    _, static, _, _ = open_adapter(os.path.join(adapters, "pe"), adapters, engine)
    print("\n| Setting (epochs, lr, replay, seed) | Updates | adapt s | Old AUROC (dev_seen) | New AUROC (new_dev) |")
    print("|---|---:|---:|---:|---:|")
    print(f"| static `pe` | — | — | {auroc(static, old):.3f} | {auroc(static, new):.3f} |")
    for setting in settings:
        epochs, lr, replay, seed = (setting.split(",") + ["0"])[:4]
        target = os.path.join(out, f"e{epochs}_lr{lr}_r{replay}_s{seed}")
        started = time.perf_counter()
        _, config = adapt(os.path.join(adapters, "pe"), os.path.join(demo, "drift", "data", "annotations",
                                                                      "new_train.jsonl"),
                          os.path.join(demo, "drift", "data", "features", "detectron.lmdb"), target, 10.0,
                          replay=int(replay), old_data=os.path.join(first["annotations"], "train.jsonl"),
                          old_features=first["features"], base=adapters, epochs=int(epochs), lr=float(lr),
                          batch_size=16, seed=int(seed), engine=engine)
        seconds = time.perf_counter() - started
        _, version, _, _ = open_adapter(target, adapters, engine)
        print(f"| {epochs}, {lr}, {replay}, {seed} | {config['lineage']['training']['updates']} | {seconds:.0f} | "
              f"{auroc(version, old):.3f} | {auroc(version, new):.3f} |", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--demo", default="logs/demo")
    parser.add_argument("--dev-size", type=int, default=256)
    parser.add_argument("--dev-seed", type=int, default=2, help="the new event's generator seed is 1; pick another")
    parser.add_argument("--adapt", action="append", default=[], metavar="EPOCHS,LR,REPLAY[,SEED]")
    args = parser.parse_args()
    dev = make_dev(args.demo, args.dev_size, args.dev_seed)
    probe_ceiling(args.demo, dev)
    colour_readout(args.demo, dev, [os.path.join(args.demo, "adapters", "pe"),
                                    os.path.join(args.demo, "drift", "pe_new_event")])
    if args.adapt:
        dev_grid(args.demo, dev, args.adapt, os.path.join(args.demo, "drift_dev", "adapters"))


if __name__ == "__main__":
    main()
