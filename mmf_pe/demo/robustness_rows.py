"""The demo's robustness rows: FC, Full and PE on test_seen under the evasion attacks of `mmf_pe robustness`
(mmf_pe.experiments.robustness), scored with text normalisation (`nfkc_confusables`, what the runs trained with)
and without it (`none`).

The demo has a 15-minute budget, so the stage is bounded and kept off the critical path:
- it runs in its own process (1 thread) beside the OCR rows stage, whose Tesseract calls use one core;
- text attacks score all test_seen memes; feature PGD a seeded sample of PGD_MEMES (at most half the split), the
  image attacks (re-extraction through the demo's random-weight Faster R-CNN, the costly part) a seeded sample of
  IMAGE_MEMES of those (at most a quarter of the split);
- a model input is scored once: inputs that tokenise alike (a caption whose look-alike letters normalisation undoes,
  or whose case an uncased tokenizer ignores) on the same features reuse the score, and an attacked image is run
  through the detector once for all three modes;
- without normalisation, an attack whose every attacked caption normalisation leaves unchanged gives the very same
  inputs, so its row is the normalised one (`=` in the report), not measured twice; with normalisation,
  `pgd+homoglyphs` (captions that normalise to the clean ones) is `pgd`'s run;
- the finished rows are cached under `<out>/robustness/` and reused while the runs and the attack set are unchanged.
"""
import argparse
import csv
import hashlib
import json
import os
import random
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from mmf_pe.utils.io import atomic_write_text

MODES = ("fc", "full", "pe")
SPLIT = "test_seen"
TEXT_ATTACKS = ("homoglyphs", "zero_width", "typos", "leetspeak", "case", "homoglyphs+zero_width")
PGD_ATTACKS = ("pgd", "pgd+homoglyphs")
IMAGE_ATTACKS = ("gaussian_noise", "grayscale", "jpeg", "blur", "sticker", "crop_resize",
                 "homoglyphs+zero_width+sticker")
PGD_MEMES, IMAGE_MEMES = 64, 32
SEED = 0
NORMALISED, RAW = "nfkc_confusables", "none"
VERSION = 1  # bump when what is measured changes: cached rows of another version are measured again
COLUMNS = ["mode", "attack", "memes", "normalization", "auroc", "accuracy", "attack_success", "flipped",
           "originally_correct", "changed_inputs", "same_inputs_as_normalised", "same_inputs_as"]


# ---- the measurement (in its own process) ------------------------------------------------------------------------

def sample(count, size, seed=SEED):
    """A fixed seeded sample of `size` of `count` meme indices, in split order; a smaller size's sample is part of
    a larger one's (the image sample lies inside the PGD sample)."""
    order = random.Random(f"demo-robustness:{seed}").sample(range(count), count)
    return sorted(order[:size])


class ScoreOnce:
    """Wraps a `mmf_pe.experiments.robustness_inputs.Detector`: a (tokenised text, features) input scored before
    is not run through the model again. `logits` (PGD's gradients) is the detector's own."""

    def __init__(self, detector):
        self.detector, self.cache = detector, {}

    def __getattr__(self, name):
        return getattr(self.detector, name)

    def _key(self, text, row):
        from mmf_pe.utils.text_normalization import normalize_text

        text = normalize_text(text, self.detector.normalization)
        tokenizer = getattr(self.detector.inputs, "tokenizer", None)
        tokens = tuple(tokenizer({"text": text})["input_ids"].tolist()) if tokenizer else text
        return tokens, hashlib.blake2b(row.contiguous().numpy().tobytes(), digest_size=16).digest()

    def probabilities(self, texts, features, batch_size=32):
        keys = [self._key(t, f) for t, f in zip(texts, features)]
        todo = sorted({k: i for i, k in reversed(list(enumerate(keys))) if k not in self.cache}.values())
        if todo:
            import torch

            scores = self.detector.probabilities([texts[i] for i in todo], features[torch.tensor(todo)], batch_size)
            self.cache.update({keys[i]: s for i, s in zip(todo, scores)})
        return [self.cache[k] for k in keys]


class ExtractOnce:
    """Wraps `robustness_inputs.ImageFeatures`: an (attacked) image goes through the detector once for all modes."""

    def __init__(self, featurize):
        self.featurize, self.cache, self.extracted = featurize, {}, 0

    @property
    def reextracts(self):
        return self.featurize.reextracts

    def load(self, path):
        return self.featurize.load(path)

    def batch(self, features, like):
        return self.featurize.batch(features, like)

    def __call__(self, image):
        import numpy as np

        pixels = np.asarray(image)
        key = (pixels.shape, hashlib.blake2b(pixels.tobytes(), digest_size=16).digest())
        if key not in self.cache:
            self.cache[key] = self.featurize(image)
            self.extracted += 1
        return self.cache[key]


def changed_inputs(name, texts, perturbed, params, images=None, paths=None):
    """How many memes' inputs the attack changed: its caption, its pixels (image attacks) or its region features
    (PGD with ε > 0 starts at a random point of the ε ball: every meme's)."""
    from mmf_pe.experiments import attacks as A

    if A.uses_pgd(name) and params["pgd"]["epsilon"] > 0:
        return len(texts)
    count = sum(1 for a, b in zip(texts, perturbed) if a != b)
    if A.needs_images(name):
        import numpy as np

        count = 0
        for i, (text, attacked, path) in enumerate(zip(texts, perturbed, paths)):
            image = images.load(path)
            after = A.attack_image(image, name, params, A.rng_for(SEED, i, name))
            count += int(text != attacked or not np.array_equal(np.asarray(image), np.asarray(after)))
    return count


def _subset(indices, *columns):
    import torch

    return [[c[i] for i in indices] if isinstance(c, list) else c[torch.tensor(indices)] for c in columns]


def _score(detector, mode, texts, labels, features, names, params, images=None, paths=None, clean_label="clean"):
    """Rows of `names` on these memes, with normalisation and without (see the module docstring)."""
    from mmf_pe.experiments import attacks as A
    from mmf_pe.experiments.robustness import run_attacks
    from mmf_pe.utils.text_normalization import normalize_text

    detector.detector.normalization = NORMALISED
    twins = pgd_twins(texts, names, params)
    on, perturbed = run_attacks(detector, texts, labels, features, [n for n in names if n not in twins], params,
                                SEED, images, paths)
    by_name = {r["attack"]: r for r in on}
    for name, twin in twins.items():
        by_name[name] = dict(by_name[twin], attack=name)
        perturbed[name] = [A.attack_text(t, name, params, A.rng_for(SEED, i, name)) for i, t in enumerate(texts)]
    on = [by_name[n] for n in ["clean"] + [r["attack"] for r in on if r["attack"] != "clean"] + list(twins)
          if n in by_name]
    needs_raw = [n for n in names if any(normalize_text(t, NORMALISED) != t for t in perturbed[n])]
    detector.detector.normalization = RAW
    off = {r["attack"]: r for r in run_attacks(detector, texts, labels, features, needs_raw, params, SEED, images,
                                               paths)[0]} if needs_raw else {}
    rows = []
    for row in on:
        name = row["attack"]
        if name == "clean_images_reextracted":
            continue  # the detector's own drift (no attack): checked in the report's note, not a table row
        common = {"mode": mode, "attack": name if name != "clean" else clean_label, "memes": len(texts)}
        changed = 0 if name == "clean" else changed_inputs(name, texts, perturbed[name], params, images, paths)
        rows.append({**common, "normalization": NORMALISED, **_metrics(row), "changed_inputs": changed,
                     "same_inputs_as": twins.get(name)})
        same = name == "clean" or name not in needs_raw
        raw = row if same else off[name]
        rows.append({**common, "normalization": RAW, **_metrics(raw), "changed_inputs": changed,
                     "same_inputs_as_normalised": same})
    reextracted = [r for r in on if r["attack"] == "clean_images_reextracted"]
    return rows, (reextracted[0] if reextracted else None)


def pgd_twins(texts, names, params, normalization=NORMALISED):
    """{attack: "pgd"} for the PGD attacks whose captions, normalised, are the clean ones: PGD's seeded start and
    its gradients then see the very inputs `pgd` sees, so the row is pgd's, not a second PGD run."""
    from mmf_pe.experiments import attacks as A
    from mmf_pe.utils.text_normalization import normalize_text

    if "pgd" not in names:
        return {}
    clean = [normalize_text(t, normalization) for t in texts]
    return {name: "pgd" for name in names if name != "pgd" and A.uses_pgd(name) and not A.needs_images(name)
            and [normalize_text(A.attack_text(t, name, params, A.rng_for(SEED, i, name)), normalization)
                 for i, t in enumerate(texts)] == clean}


def _metrics(row):
    """The row's numbers; NaN (AUROC of one class, success with nothing originally correct) as None (JSON null)."""
    import math

    picked = {k: row.get(k) for k in ("auroc", "accuracy", "attack_success", "flipped", "originally_correct")}
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in picked.items()}


def measure(runs, annotations, features, images_dir, out_dir, pgd_memes=PGD_MEMES, image_memes=IMAGE_MEMES):
    """All rows for {mode: run dir}; writes rows.json / rows.csv under out_dir and returns the result dict."""
    import torch

    from mmf_pe.experiments import attacks as A
    from mmf_pe.experiments.robustness_inputs import ImageFeatures, load_run, read_split
    from mmf_pe.tuners.provenance import read_feature_provenance

    torch.set_num_threads(1)
    started, cpu = time.time(), time.process_time()
    texts, labels, batch, paths = read_split(annotations, features)
    pgd_sample = sample(len(texts), pgd_memes)
    image_sample = sample(len(texts), image_memes)
    params = A.resolve(list(TEXT_ATTACKS + PGD_ATTACKS + IMAGE_ATTACKS))
    images = ExtractOnce(ImageFeatures(images_dir, read_feature_provenance(features), allow_random_weights=True))
    rows, reextracted, trained_with, parts = [], {}, {}, {}

    def timed(part, function, *args, **kwargs):
        mark = time.process_time()
        value = function(*args, **kwargs)
        parts[part] = round(parts.get(part, 0.0) + time.process_time() - mark, 1)
        return value

    for mode, run_dir in runs.items():
        detector, _, _ = timed("load models", load_run, run_dir, SPLIT)
        trained_with[mode] = detector.normalization
        detector = ScoreOnce(detector)
        rows += timed("text attacks", _score, detector, mode, texts, labels, batch, TEXT_ATTACKS, params)[0]
        rows += timed("feature PGD", _score, detector, mode, *_subset(pgd_sample, texts, labels, batch), PGD_ATTACKS,
                      params, clean_label=f"clean ({len(pgd_sample)} memes)")[0]
        image_rows, again = timed("image attacks", _score, detector, mode, *_subset(image_sample, texts, labels, batch),
                                  IMAGE_ATTACKS, params, images, [paths[i] for i in image_sample],
                                  f"clean ({len(image_sample)} memes)")
        rows += image_rows
        reextracted[mode] = _metrics(again) if again else None
    result = {"version": VERSION, "split": SPLIT, "memes": len(texts), "pgd_memes": len(pgd_sample),
              "image_memes": len(image_sample), "image_sample_ids": [_meme_id(paths[i]) for i in image_sample],
              "seed": SEED, "attacks": params, "trained_with": trained_with, "reextracted": reextracted,
              "extractions": images.extracted, "rows": rows, "measure_seconds": round(time.time() - started, 1),
              "measure_cpu_seconds": round(time.process_time() - cpu, 1), "cpu_seconds_by_part": parts}
    write_rows(result, out_dir)
    return result


def _meme_id(path):
    return os.path.splitext(os.path.basename(path))[0]


def write_rows(result, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "rows.csv.partial"), "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows({c: r.get(c) for c in COLUMNS} for r in result["rows"])
    os.replace(os.path.join(out_dir, "rows.csv.partial"), os.path.join(out_dir, "rows.csv"))
    atomic_write_text(os.path.join(out_dir, "rows.json"), json.dumps(result, indent=1) + "\n")


# ---- the stage (in the demo's process) ---------------------------------------------------------------------------

def cache_key(runs, annotations, sizes):
    """What the rows depend on: each run's stamp (retraining changes it) and best checkpoint, the split, the sizes."""
    from mmf_pe.demo.runs import read_stamp

    parts = {"version": VERSION, "sizes": sizes, "split": _file_id(annotations),
             "attacks": [TEXT_ATTACKS, PGD_ATTACKS, IMAGE_ATTACKS]}
    for mode, run_dir in runs.items():
        stamp = read_stamp(run_dir)
        parts[mode] = [stamp.get("key"), stamp.get("train_seconds"), _file_id(os.path.join(run_dir, "best.ckpt"))]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _file_id(path):
    """The file's content (not its path or mtime: a copied or moved demo folder keeps its rows)."""
    from mmf_pe.utils.hashing import file_sha256

    return file_sha256(path)


def start_stage(out, run_dirs, paths, log):
    """Start the stage beside whatever runs next (one process, one thread); `.result()` waits for its dict:
    {"rows", ..., "wall_seconds", "cpu_seconds"} or {"skipped": reason}."""
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(_stage, out, run_dirs, paths, log)
    pool.shutdown(wait=False)
    return future


def _stage(out, run_dirs, paths, log):
    first_seed = min(seed for _, seed in run_dirs) if run_dirs else None
    runs = {mode: run_dirs[(mode, first_seed)] for mode in MODES if (mode, first_seed) in run_dirs}
    if not runs:
        return {"skipped": "none of FC, Full, PE ran"}
    annotations = os.path.join(paths["annotations"], f"{SPLIT}.jsonl")
    features = os.path.join(paths["root"], "features", "detectron.lmdb")
    out_dir = os.path.join(out, "robustness")
    with open(annotations) as f:
        count = sum(1 for line in f if line.strip())
    sizes = {"pgd": max(1, min(PGD_MEMES, count // 2)), "images": max(1, min(IMAGE_MEMES, count // 4))}
    key = cache_key(runs, annotations, sizes)
    cached = _read_cached(out_dir, key)
    if cached:
        log(f"robustness rows: measured earlier, reused ({out_dir})")
        return cached
    log(f"robustness rows: {', '.join(runs)} on {SPLIT} under {len(TEXT_ATTACKS + PGD_ATTACKS + IMAGE_ATTACKS)} "
        f"attacks (PGD on {sizes['pgd']}, image attacks on {sizes['images']} memes), beside the OCR rows")
    job = json.dumps({"runs": runs, "annotations": annotations, "features": features, "images": paths["images"],
                      "out_dir": out_dir, "pgd_memes": sizes["pgd"], "image_memes": sizes["images"]})
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    started = time.time()
    process = subprocess.Popen([sys.executable, "-m", "mmf_pe.demo.robustness_rows", job], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"robustness rows failed; last lines:\n{output[-3000:]}")
    with open(os.path.join(out_dir, "rows.json")) as f:
        result = json.load(f)
    result.update(key=key, wall_seconds=round(time.time() - started, 1),
                  cpu_seconds=round(usage.ru_utime + usage.ru_stime, 1), peak_rss_mb=round(usage.ru_maxrss / 1024))
    atomic_write_text(os.path.join(out_dir, "rows.json"), json.dumps(result, indent=1) + "\n")
    log(f"robustness rows: {result['wall_seconds']:.0f} s wall, {result['cpu_seconds']:.0f} CPU s, "
        f"{result['extractions']} detector re-extractions")
    return result


def _read_cached(out_dir, key):
    try:
        with open(os.path.join(out_dir, "rows.json")) as f:
            result = json.load(f)
    except (OSError, ValueError):
        return None
    return result if result.get("key") == key else None


# ---- the report --------------------------------------------------------------------------------------------------

LABELS = {"fc": "fc", "full": "full", "pe": "pe/paper"}


def _fmt(value):
    return "n/a" if value is None else f"{value:.3f}"


def _success(row):
    if row["attack"].startswith("clean"):
        return "—"
    if row.get("attack_success") is None:
        return "n/a (0 correct)"
    return f"{row['attack_success']:.3f} ({row['flipped']}/{row['originally_correct']})"


def markdown(result):
    """One table per mode (rows: attacks; columns: with / without normalisation) and how it was measured."""
    if not result:
        return "Not run."
    if "skipped" in result:
        return result["skipped"] + "."
    lines = [f"`mmf_pe.experiments.robustness` on {result['split']} (seed {result['seed']}; attack success = "
             "flipped predictions / originally correct ones). **Subsets**: text attacks on all "
             f"{result['memes']} memes; feature PGD on a seeded sample of {result['pgd_memes']}; image attacks "
             f"(each attacked image re-extracted by the demo's random-weight Faster R-CNN) on a seeded sample of "
             f"{result['image_memes']} of those; each subset has its own clean row. PGD perturbs the region "
             "features (ε 0.2, 5 steps; the detector is not differentiable end to end). \"Normalised\": "
             f"`{NORMALISED}` (the runs trained with: "
             + ", ".join(f"{LABELS[m]} `{v}`" for m, v in result["trained_with"].items())
             + f"); \"raw\": `{RAW}`. A raw row marked = scores the same inputs as the normalised one (normalisation "
             "leaves every attacked caption unchanged) and is not measured twice; likewise normalised "
             "`pgd+homoglyphs`, whose captions normalise to the clean ones, is `pgd`'s run (the same inputs, the "
             "same seeded start). "
             "Changed: memes whose caption, pixels or (PGD) region features the attack changed. Rows and "
             "parameters: `robustness/rows.csv`, `robustness/rows.json`."]
    by_mode = {}
    for row in result["rows"]:
        by_mode.setdefault(row["mode"], {}).setdefault(row["attack"], {})[row["normalization"]] = row
    for mode, attacks in by_mode.items():
        lines += ["", f"**{LABELS.get(mode, mode)}**", "",
                  "| Attack | Memes | Changed | AUROC | Acc. | Success | AUROC, raw | Acc., raw | Success, raw |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, pair in attacks.items():
            on, off = pair[NORMALISED], pair[RAW]
            raw = ["=", "=", "="] if off.get("same_inputs_as_normalised") and not name.startswith("clean") else \
                [_fmt(off["auroc"]), _fmt(off["accuracy"]), _success(off)]
            lines.append(f"| {name} | {on['memes']} | {on['changed_inputs']} | {_fmt(on['auroc'])} | "
                         f"{_fmt(on['accuracy'])} | {_success(on)} | " + " | ".join(raw) + " |")
    again = {m: r for m, r in (result.get("reextracted") or {}).items() if r}
    if again:
        stored = {m: a[f"clean ({result['image_memes']} memes)"][NORMALISED] for m, a in by_mode.items()}
        same = all(r["flipped"] == 0 and r["auroc"] == stored[m]["auroc"] for m, r in again.items())
        lines += ["", "Check: the unattacked image sample run through the detector again scores AUROC "
                  + ", ".join(f"{_fmt(r['auroc'])} ({LABELS.get(m, m)})" for m, r in again.items())
                  + f", {max(r['flipped'] for r in again.values())} prediction(s) flipped against the stored "
                  + ("features: the same, so the image rows measure the attacks, not the re-extraction." if same else
                     "features: NOT the same, so the image rows mix the attacks with the re-extraction's drift.")]
    if "wall_seconds" in result:
        lines += ["", f"Measured in {result['wall_seconds']:.0f} s wall / {result['cpu_seconds']:.0f} CPU s (one "
                  f"thread, beside the OCR rows; {result['extractions']} detector re-extractions, peak "
                  f"{result['peak_rss_mb']} MB)."]
    return "\n".join(lines)


def summary(result):
    """A few lines for the end of `mmf_pe demo`: attack success per mode, normalised / raw."""
    if not result or "rows" not in result:
        return ""
    success = {}
    for row in result["rows"]:
        if not row["attack"].startswith("clean"):
            success.setdefault(row["attack"], {}).setdefault(row["mode"], {})[row["normalization"]] = \
                row["attack_success"]
    modes = [m for m in MODES if any(m in v for v in success.values())]
    lines = ["| Attack | " + " | ".join(f"{LABELS[m]} (normalised / raw)" for m in modes) + " |",
             "|---|" + "---:|" * len(modes)]
    for name, per_mode in success.items():
        lines.append(f"| {name} | " + " | ".join(
            f"{_fmt(per_mode[m][NORMALISED])} / {_fmt(per_mode[m][RAW])}" for m in modes) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description="the demo's robustness rows (run by `mmf_pe demo`)")
    parser.add_argument("job", help="JSON: runs, annotations, features, images, out_dir, pgd_memes, image_memes")
    job = json.loads(parser.parse_args(argv).job)
    measure(job["runs"], job["annotations"], job["features"], job["images"], job["out_dir"], job["pgd_memes"],
            job["image_memes"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
