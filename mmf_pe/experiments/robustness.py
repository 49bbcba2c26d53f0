"""`mmf_pe robustness <run dir | exported adapter> [--split test_seen] [--attacks ...] --out DIR`: how a detector's
predictions change under evasion attacks (mmf_pe.utils.attacks) and white-box PGD.

Per attack: AUROC, accuracy and attack success rate (predictions flipped among the originally correct ones) beside
the clean numbers, as `robustness.md`, `robustness.csv` and `robustness.png` under --out, with the attack
parameters (`attacks.yaml`, also printed). Seeds are fixed (--seed). A run directory brings its data (the run
config's annotations and region features or images); an exported adapter (`<served folder>/<name>`) needs
--annotations and --features (VisualBERT) or --images (frozen_vl / clip_pe).

PGD: for VisualBERT it perturbs the region features (L-infinity ball around them): VisualBERT is not differentiable
end to end (the Faster R-CNN's box selection sits between pixels and features), so pixel PGD does not apply to it.
For frozen_vl / clip_pe models it perturbs the pixels in [0, 1], differentiated through the run's image processor's
Normalize and the (frozen) encoder. Image attacks on VisualBERT need the memes' images and the detector that made
the features; with precomputed features only they are reported as not run.
"""
import argparse
import csv
import os

import torch

from mmf_pe.experiments.robustness_inputs import (
    Detector,
    ImageFeatures,
    ImagePixels,
    PixelDetector,
    RobustnessError,
    load_adapter_export,
    load_run,
    read_split,
)
from mmf_pe.utils import attacks as A

DEFAULT_ATTACKS = ["homoglyphs", "zero_width", "typos", "leetspeak", "case", "homoglyphs+zero_width", "pgd",
                   "pgd+homoglyphs"] + list(A.IMAGE_ATTACKS)
PGD_NOTE = Detector.pgd_note  # VisualBERT's; PixelDetector.pgd_note for frozen_vl / clip_pe
PIXEL_PGD_NOTE = PixelDetector.pgd_note


# ---- attacks and metrics ---------------------------------------------------------------------------------------

def pgd(detector, texts, labels, features, epsilon, steps, step_size=None, seed=0, bounds=None):
    """L-infinity PGD (random start, sign steps) maximising the true label's loss, on the detector's image inputs
    (region features, or [0, 1] pixels with `bounds` (0, 1)); `detector.logits(texts, inputs)` must be
    differentiable in the inputs."""
    from mmf_pe.utils.pgd import linf_pgd

    def loss(inputs):
        return torch.nn.functional.cross_entropy(detector.logits(texts, inputs), torch.tensor(labels))

    torch.manual_seed(seed)
    return linf_pgd(loss, features, epsilon, steps, step_size, None, bounds)


def metrics(labels, probabilities, threshold, clean_predictions=None):
    from sklearn.metrics import roc_auc_score

    predictions = [int(p >= threshold) for p in probabilities]
    row = {"auroc": roc_auc_score(labels, probabilities) if len(set(labels)) == 2 else float("nan"),
           "accuracy": sum(int(p == y) for p, y in zip(predictions, labels)) / len(labels)}
    if clean_predictions is not None:
        correct = [i for i, (p, y) in enumerate(zip(clean_predictions, labels)) if p == y]
        flipped = sum(1 for i in correct if predictions[i] != labels[i])
        row.update(attack_success=flipped / len(correct) if correct else float("nan"), flipped=flipped,
                   originally_correct=len(correct))
    return row, predictions


def run_attacks(detector, texts, labels, features, names, params, seed=0, images=None, image_paths=None):
    """[{attack, auroc, accuracy, attack_success, ...}], clean first; also the perturbed texts per attack.
    `images`: an ImageFeatures (image attacks run through the detector), or None (they are reported as not run)."""
    clean, clean_predictions = metrics(labels, detector.probabilities(texts, features), detector.threshold)
    rows, perturbed = [dict(attack="clean", **clean, attack_success=0.0, status="ok")], {}
    if images is not None and images.reextracts and any(A.needs_images(n) for n in names):
        # the detector run again on the clean images: its own drift, no attack
        again = images.batch([images(images.load(p)) for p in image_paths], features)
        row, _ = metrics(labels, detector.probabilities(texts, again), detector.threshold, clean_predictions)
        rows.append(dict(attack="clean_images_reextracted", **row, status="ok"))
    for name in names:
        if A.needs_images(name) and images is None:
            rows.append({"attack": name, "status": "not run: precomputed features only (no images / detector)"})
            continue
        attacked = [A.attack_text(t, name, params, A.rng_for(seed, i, name)) for i, t in enumerate(texts)]
        attacked_features = features
        if A.needs_images(name):
            attacked_features = images.batch([images(A.attack_image(images.load(path), name, params,
                                                                    A.rng_for(seed, i, name)))
                                              for i, path in enumerate(image_paths)], features)
        if A.uses_pgd(name):
            p = params["pgd"]
            attacked_features = pgd(detector, attacked, labels, attacked_features, p["epsilon"], p["steps"],
                                    p["step_size"], seed, detector.bounds)
        perturbed[name] = attacked
        row, _ = metrics(labels, detector.probabilities(attacked, attacked_features), detector.threshold,
                         clean_predictions)
        rows.append(dict(attack=name, **row, status="ok"))
    return rows, perturbed


# ---- outputs -----------------------------------------------------------------------------------------------------

def _fmt(value):
    return "" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def write_outputs(rows, out, header):
    from mmf_pe.utils.io import atomic_write_text

    os.makedirs(out, exist_ok=True)
    columns = ["attack", "auroc", "accuracy", "attack_success", "flipped", "originally_correct", "status"]
    lines = [header, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in rows]
    atomic_write_text(os.path.join(out, "robustness.md"), "\n".join(lines) + "\n")
    with open(os.path.join(out, "robustness.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows({c: r.get(c) for c in columns} for r in rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [r for r in rows if r.get("status") == "ok"]
    figure, axis = plt.subplots(figsize=(max(6, 0.7 * len(measured)), 4))
    x = range(len(measured))
    axis.bar([i - 0.2 for i in x], [r["auroc"] for r in measured], 0.4, label="AUROC")
    axis.bar([i + 0.2 for i in x], [r.get("attack_success", 0.0) for r in measured], 0.4, label="attack success")
    axis.set_xticks(list(x), [r["attack"] for r in measured], rotation=45, ha="right")
    axis.set_ylim(0, 1)
    axis.legend()
    figure.tight_layout()
    figure.savefig(os.path.join(out, "robustness.png"))
    plt.close(figure)
    return os.path.join(out, "robustness.md")


def robustness(source, out, split="test_seen", names=None, overrides=None, seed=0, annotations=None, features=None,
               images=None, detector_weights=None, allow_random_weights=False, limit=None, normalization=None):
    """Measure, write the outputs; returns (rows, perturbed texts, chosen parameters)."""
    import yaml

    names = list(names or DEFAULT_ATTACKS)
    if limit is not None and limit < 1:
        raise RobustnessError(f"--limit {limit}: give a positive number of memes")
    params = A.resolve(names, overrides)
    from mmf_pe.tuners.provenance import read_feature_provenance

    if os.path.isfile(os.path.join(source, "adapter_config.json")):
        detector, provenance = load_adapter_export(source)
        pixels = isinstance(detector, PixelDetector)
        if not annotations or not (images if pixels else features):
            data = "--images <the memes' image folder>" if pixels else "--features <region feature LMDB>"
            raise RobustnessError(f"{source}: an exported adapter does not record its data; pass --annotations "
                                  f"<labelled jsonl> and {data}")
    else:
        detector, run_annotations, run_data = load_run(source, split)
        pixels = isinstance(detector, PixelDetector)
        annotations = annotations or run_annotations
        if pixels:
            images = images or run_data
        else:
            features = features or run_data
        provenance = None
    if normalization is not None:  # measure the same model with the defence switched (e.g. off: `none`)
        from mmf_pe.utils.text_normalization import check_mode

        detector.normalization = check_mode(normalization, "--normalization")
    for path in (annotations, images if pixels else features):
        if not os.path.exists(path):
            raise RobustnessError(f"{path}: not found")
    featurize = None
    if pixels:  # the clean inputs are the images through the run's processor; image attacks always run
        featurize = ImagePixels(images, detector.pixel_space)
        texts, labels, batch, image_paths = read_split(annotations, None, featurize)
    else:
        provenance = provenance or read_feature_provenance(features)
        texts, labels, batch, image_paths = read_split(annotations, features)
    if limit:
        texts, labels, batch, image_paths = texts[:limit], labels[:limit], batch[:limit], image_paths[:limit]
    if not pixels and images and any(A.needs_images(n) for n in names):
        featurize = ImageFeatures(images, provenance, detector_weights, allow_random_weights)
    rows, perturbed = run_attacks(detector, texts, labels, batch, names, params, seed, featurize, image_paths)
    os.makedirs(out, exist_ok=True)
    text = yaml.safe_dump({"seed": seed, "split": split, "text_normalization": detector.normalization,
                           "attacks": params}, sort_keys=False)
    with open(os.path.join(out, "attacks.yaml"), "w") as f:
        f.write(text)
    header = (f"Robustness of {source} on {annotations} ({len(texts)} memes, seed {seed}, text normalisation "
              f"{detector.normalization}). Attack success: flipped predictions / originally correct ones. "
              f"{detector.pgd_note}.")
    write_outputs(rows, out, header)
    return rows, perturbed, params, text


def main(argv=None):
    import yaml

    parser = argparse.ArgumentParser(prog="mmf_pe robustness", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="run directory (env.save_dir) or exported adapter (<served folder>/<name>)")
    parser.add_argument("--split", default="test_seen")
    parser.add_argument("--attacks", nargs="+", default=None, help=f"default: {' '.join(DEFAULT_ATTACKS)}")
    parser.add_argument("--params", default=None, help="YAML {attack: {parameter: value}} overriding the defaults")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--annotations", default=None, help="labelled jsonl (needed for an exported adapter)")
    parser.add_argument("--features", default=None, help="region feature LMDB (needed for an exported VisualBERT "
                        "adapter)")
    parser.add_argument("--images", default=None, help="the memes' image folder (annotations' img paths under it): "
                        "for VisualBERT image attacks run through the detector the features' provenance records; "
                        "frozen_vl / clip_pe read the images anyway (default for a run: its dataset's images)")
    parser.add_argument("--detector-weights", default=None, help="the detector's weights (as for mmf_pe serve)")
    parser.add_argument("--allow-random-weights", action="store_true", help="a random-weight detector (demo, tests)")
    parser.add_argument("--limit", type=int, default=None, help="score the first N memes only")
    parser.add_argument("--normalization", default=None, choices=["none", "nfkc_confusables"],
                        help="text normalisation to score with (default: what the run / export records)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    overrides = None
    if args.params:
        with open(args.params) as f:
            overrides = yaml.safe_load(f) or {}
        if not isinstance(overrides, dict):
            raise SystemExit(f"{args.params}: expected a mapping {{attack: {{parameter: value}}}}")
    try:
        rows, _, _, text = robustness(args.source, args.out, args.split, args.attacks, overrides, args.seed,
                                      args.annotations, args.features, args.images, args.detector_weights,
                                      args.allow_random_weights, args.limit, args.normalization)
    except (RobustnessError, A.AttackError) as error:
        raise SystemExit(f"mmf_pe robustness: {error}") from None
    print(text)
    with open(os.path.join(args.out, "robustness.md")) as f:
        print(f.read())
    return 0
