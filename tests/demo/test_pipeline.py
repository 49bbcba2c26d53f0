"""The demo pipeline at test scale (smoke preset: 80 memes of 64 px, 4 random-detector regions, a tiny random BERT,
at most 16 updates, validation every 2, patience 2): real extraction, real `mmf_run` for FC / Full / PE / text-only
with rc10's early stopping, `mmf_pe evaluate`, adapter export over one base, the report; then seeds."""
import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from mmf_pe.data.lmdb_features import read_keys, read_record
from mmf_pe.demo import pipeline
from mmf_pe.demo.adapters import served_model
from mmf_pe.reporting import load_run
from mmf_pe.serve.engine import AdapterError
from mmf_pe.tracking.jsonl import find_metrics_file

MODES = {"fc", "full", "pe/paper", "text-only (full, no image)"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("demo"))
    settings = pipeline.settings_for("smoke")
    return out, settings, pipeline.run_demo(out, settings)


def _curve(save_dir):
    run = load_run(find_metrics_file(save_dir), save_dir)
    return [(step, m["roc_auc"]) for step, m in run.curve]


def _expected_stop(curve, patience, cap):
    """Where rc10's early stopping ends a run with this validation curve: the first validation that is not better
    than the best and comes more than `patience` updates after it; else the cap."""
    best, best_step = -np.inf, 0
    for step, value in curve:
        if value > best:
            best, best_step = value, step
        elif best_step + patience < step:
            return step
    return cap


def test_report_files_and_table2_values(demo):
    out, settings, result = demo
    assert result["markdown"] == os.path.join(out, "report", "report.md")
    with open(result["markdown"]) as f:
        markdown = f.read()
    assert "random weights" in markdown and "tone(caption) XOR warmth(figure)" in markdown
    assert "Chance band" in markdown and "## Stage times" in markdown
    # 4 runs x val, test_seen, test_unseen, and test_seen with the caption read from the image (OCR)
    ocr = shutil.which("tesseract") is not None
    assert markdown.count("| hateful_memes |") == 4 * (4 if ocr else 3)
    with open(result["summary"]) as f:
        summary = json.load(f)
    rows = {(r["mode"], r["split"]): r for r in summary["table2"]}
    assert {mode for mode, _ in rows} == MODES
    assert {split for _, split in rows} == {"val", "test_seen", "test_unseen"} | ({"test_seen_ocr"} if ocr else set())
    if ocr:  # the OCR section: one row per mode, and the word error rate against the given captions
        section = markdown.split("## Text read from the image (OCR)", 1)[1].split("\n## ", 1)[0]
        assert section.count("| ") >= 4 and "OCR word error rate against the given captions" in section
        assert 0.0 <= summary["ocr"]["wer"] <= 1.5 and summary["ocr"]["images"] == settings.splits["test_seen"]
    for row in rows.values():
        for metric in ("roc_auc", "accuracy", "binary_f1"):
            assert 0.0 <= row[metric]["mean"] <= 1.0 and row[metric]["n"] == 1
    # the main job trains with precision auto and says what it ran in: the resolver's choice for this machine
    from mmf_pe.utils.precision import resolve_precision

    chosen = resolve_precision("auto", "cpu").name
    assert {(d["requested"], d["name"]) for d in summary["precision"].values()} == {("auto", chosen)}
    assert len(summary["precision"]) == 4 and result["precision"].split(" ran ", 1)[1] in markdown
    assert f"ran **{chosen}** in every run" in result["precision"]
    names = {os.path.basename(p) for p in result["plots"]}
    assert "auroc_vs_updates_and_seconds.png" in names and len(names) >= 3
    for path in result["plots"]:
        with Image.open(path) as image:
            image.verify()
            assert image.format == "PNG"


def test_each_mode_stops_at_its_plateau(demo):
    out, settings, _ = demo
    stops = {}
    for name in settings.runs:
        curve = _curve(pipeline.run_dir(out, name, 1))
        assert [s for s, _ in curve] == list(range(2, curve[-1][0] + 1, 2))
        stops[name] = curve[-1][0]
        assert stops[name] == _expected_stop(curve, settings.patience, settings.updates), name
    assert min(stops.values()) < settings.updates  # early stopping did end a run (fixed seeds: always the same)


def test_compute_columns(demo):
    _, settings, result = demo
    rows = {row["mode"]: row for row in result["rows"]}
    assert set(rows) == MODES
    for row in rows.values():
        assert 0 < row["best_update"] <= row["updates"] <= settings.updates
        assert row["wall_seconds"] > 0 and 0 < row["seconds_per_update"] < row["wall_seconds"]
        assert row["peak_rss_mb"] > 50 and row["trained"] > 0
    assert rows["fc"]["trained"] < rows["pe/paper"]["trained"] < rows["full"]["trained"]
    header = result["table2"].splitlines()[0]
    for column in ("Trained params", "Best update", "Updates run", "Wall s", "s / update", "Peak RSS MB",
                   "dev_seen AUROC", "test_seen AUROC", "test_unseen AUROC"):
        assert column in header
    assert "Training seed(s): 1 " in result["table2"]


def test_adapters_over_one_base(demo, tmp_path):
    """The demo's adapters are a folder `mmf_pe serve` serves: base/ once, FC and PE over it (fingerprints checked)."""
    out, _, _ = demo
    adapters = os.path.join(out, "adapters")
    with open(os.path.join(adapters, "index.json")) as f:
        index = json.load(f)
    assert set(index["adapters"]) == {"fc", "pe"}
    assert index["adapters"]["pe"]["pe_method"] == "paper"
    assert index["default_adapter"] == "pe"
    for name in ("fc", "pe"):
        assert sorted(os.listdir(os.path.join(adapters, name))) == ["adapter_config.json",
                                                                    "adapter_model.safetensors"]
        assert index["adapters"][name]["accepts_images"]
    assert sorted(os.listdir(os.path.join(adapters, "base"))) == ["base_config.json", "base_model.safetensors",
                                                                  "tokenizer"]
    model = served_model(adapters, "pe")  # what the server builds: base + adapter, fingerprint checked
    assert any("adapter" in name for name, _ in model.named_parameters())

    import shutil

    from safetensors.torch import load_file, save_file

    adapters = str(tmp_path / "adapters")
    shutil.copytree(os.path.join(out, "adapters"), adapters)  # tamper with a copy: other tests serve the demo's
    weights = os.path.join(adapters, "base", "base_model.safetensors")
    base = load_file(weights)
    key = next(k for k in sorted(base) if k.endswith("attention.self.query.weight"))
    base[key] = base[key] + 1.0
    save_file(base, weights)
    with pytest.raises(ValueError, match="base_model.safetensors: not the file base_config.json lists"):
        served_model(adapters, "fc")  # the base's manifest (sha256 per file) refuses the edited file by name
    config_path = os.path.join(adapters, "base", "base_config.json")
    with open(config_path) as f:
        config = json.load(f)
    config.pop("files")  # as a base exported before manifests: the adapter's fingerprint check still refuses it
    with open(config_path, "w") as f:
        json.dump(config, f)
    with pytest.raises(AdapterError, match="trained on other base weights"):
        served_model(adapters, "fc")


def test_served_demo_meme_scores_as_offline(demo):
    """`mmf_pe serve --demo`'s image path (its detector settings from the adapter's provenance, the demo's
    standardisation applied) gives a meme the score the offline model gives its training-time LMDB features."""
    from mmf_pe.serve.cli import detector_options, parser, with_demo_defaults
    from mmf_pe.serve.engine import Engine
    from mmf_pe.serve.features import Featurizer

    out, _, _ = demo
    engine = Engine(os.path.join(out, "adapters"))
    version = engine.read_folder_version("pe")
    args = with_demo_defaults(parser().parse_args(["--demo"]))  # what `mmf_pe serve --demo` runs with
    featurizer = Featurizer(**detector_options(args, version.provenance))
    assert featurizer.differences(version.provenance) == {}
    data = os.path.join(out, "data", "datasets", "hateful_memes", "defaults")
    lmdb = os.path.join(data, "features", "detectron.lmdb")
    with open(os.path.join(data, "annotations", "dev_seen.jsonl")) as f:
        memes = [json.loads(line) for line in f][:3]
    keys = [os.path.splitext(os.path.basename(m["img"]))[0] for m in memes]
    stored = [torch.from_numpy(read_record(lmdb, key)["features"]) for key in keys]
    served = [featurizer(np.asarray(Image.open(os.path.join(data, "images", m["img"])).convert("RGB")),
                         version.provenance["normalisation"])[0] for m in memes]
    for key, a, b in zip(keys, stored, served):
        # z-scored (unit scale); float sums differ with the thread count: measured max difference 2e-4
        assert torch.allclose(a, b, atol=1e-3), (key, (a - b).abs().max().item())
    texts = [m["text"] for m in memes]
    offline, _ = engine.score(version, texts, stored)
    online, _ = engine.score(version, texts, served)
    assert np.allclose(offline, online, atol=1e-4)


def test_drift_rows_static_and_adapted_pe(demo):
    """The new event's rows: the exported PE adapter and its `mmf_pe adapt` successor (lineage: parent = the static
    adapter, labels = the new period's train split, replay from the first period), both scored on both periods."""
    from mmf_pe.demo import drift_rows, memes, new_event

    out, settings, result = demo
    with open(result["summary"]) as f:
        drift = json.load(f)["drift"]
    static, adapted = drift["rows"]
    labels = drift_rows.new_period_splits(settings)["new_train"]
    assert (static["adapter"], adapted["adapter"]) == ("pe", "pe_new_event") and labels <= 500
    assert static["labels"] == settings.splits["train"] and static["train_seconds"] > 0
    assert adapted["labels"] == labels and adapted["replayed"] == labels
    assert adapted["updates"] == drift_rows.EPOCHS * -(-2 * labels // settings.batch_size)  # fixed epochs, no cap hit
    for row in drift["rows"]:
        assert 0.0 <= row["old_auroc"] <= 1.0 and 0.0 <= row["new_auroc"] <= 1.0
    with open(os.path.join(out, "adapters", "pe", "adapter_config.json"), "rb") as f:
        static_config = f.read()
    with open(os.path.join(out, "drift", "pe_new_event", "adapter_config.json")) as f:
        lineage = json.load(f)["lineage"]
    assert lineage["parent"]["fingerprint"] == static["fingerprint"] == adapted["parent"]
    assert lineage["generation"] == 1 and lineage["data"]["labels"] == labels
    assert lineage["replay"]["annotations"].endswith("train.jsonl") and lineage["training"]["stopped_by"] == "epochs"
    assert json.loads(static_config).get("lineage") is None
    assert drift["test"]["new"]["memes"] == settings.splits["test_seen"]
    # the new period holds no template, tone word or figure colour of the first one
    with open(os.path.join(out, "drift", "data", "factors.jsonl")) as f:
        factors = [json.loads(line) for line in f]
    def values(rows):
        return {(key, row[key]) for row in rows for key in ("tone_word", "colour", "shape")}

    first = memes.read_factors(os.path.join(out, "data"))
    assert values(first) and values(factors) and not values(first) & values(factors)
    assert {f["text"].replace(f["tone_word"], "") for f in first}.isdisjoint(
        f["text"].replace(f["tone_word"], "") for f in factors)
    assert all(f["id"] >= new_event.FIRST_ID for f in factors) and len(factors) == sum(
        drift_rows.new_period_splits(settings).values())
    with open(result["markdown"]) as f:
        section = f.read().split("## A new event", 1)[1].split("\n## ", 1)[0]
    assert "| `pe` |" in section and "| `pe_new_event` |" in section and "goal >= 90 %" in section


def test_confounders_in_summary_and_features(demo):
    out, settings, result = demo
    with open(result["summary"]) as f:
        confounders = json.load(f)["confounders"]
    for split, size in settings.splits.items():
        assert confounders[split]["memes"] == size
        assert confounders[split]["caption_lookup_accuracy"] == 0.5
        assert confounders[split]["pattern_lookup_accuracy"] == 0.5
    features = os.path.join(out, "data", "datasets", "hateful_memes", "defaults", "features")
    keys = read_keys(os.path.join(features, "detectron.lmdb"))
    assert len(keys) == sum(settings.splits.values())
    record = read_record(os.path.join(features, "detectron.lmdb"), keys[0])
    assert record["features"].shape == (settings.num_regions, 2048) and np.isfinite(record["features"]).all()
    text_only = read_record(os.path.join(features, "text_only.lmdb"), keys[0])["features"]
    assert text_only.shape == (1, 2048) and not text_only.any()


def test_rerun_reuses_everything(demo, capsys):
    out, settings, _ = demo
    logs = {name: os.path.getsize(os.path.join(pipeline.run_dir(out, name, 1), "train.log")) for name in settings.runs}
    pipeline.run_demo(out, settings)
    printed = capsys.readouterr().out
    assert printed.count("finished earlier, reused") == len(settings.runs), printed
    assert "mmf_pe evaluate" not in printed
    assert logs == {name: os.path.getsize(os.path.join(pipeline.run_dir(out, name, 1), "train.log"))
                    for name in settings.runs}


def test_copied_folder_and_moved_checkout_reuse_everything(demo, tmp_path, monkeypatch, capsys):
    """The reuse keys hold no absolute path and no mtime: the demo folder copied elsewhere (fresh mtimes, as `cp -r`)
    and the checkout seen under another path (a symlink) retrain, re-evaluate and re-measure nothing."""
    from mmf_pe.demo.runs import read_stamp

    out, settings, _ = demo
    copy = str(tmp_path / "copied_demo")
    shutil.copytree(out, copy, symlinks=True, copy_function=shutil.copy)
    checkout = tmp_path / "moved_checkout"
    checkout.symlink_to(pipeline.REPO_ROOT, target_is_directory=True)
    monkeypatch.setattr(pipeline, "REPO_ROOT", str(checkout))
    monkeypatch.setattr(pipeline, "PROJECT", os.path.join(str(checkout), "projects", "visual_bert_pe"))
    stamps = {name: read_stamp(pipeline.run_dir(copy, name, 1)) for name in settings.runs}
    pipeline.run_demo(copy, settings)
    printed = capsys.readouterr().out
    assert printed.count("finished earlier, reused") == len(settings.runs), printed
    assert "trained in" not in printed and "mmf_pe evaluate" not in printed
    assert "robustness rows: measured earlier, reused" in printed
    assert "drift: adapted adapter and its scores reused" in printed
    assert stamps == {name: read_stamp(pipeline.run_dir(copy, name, 1)) for name in settings.runs}


def test_seeds_mean_std_and_same_numbers_from_scratch(demo, tmp_path):
    """--seeds 1 2 in a fresh folder: seed 1 recomputes exactly the first run's numbers (fixed seed and threads),
    and Table II gives mean ± std over the two seeds."""
    _, _, first = demo
    settings = pipeline.settings_for("smoke", runs=("fc",), seeds=(1, 2))
    result = pipeline.run_demo(str(tmp_path), settings)
    rows = [r for r in result["rows"] if r["mode"] == "fc"]
    assert sorted(r["seed"] for r in rows) == [1, 2]
    again = next(r for r in rows if r["seed"] == 1)
    before = next(r for r in first["rows"] if r["mode"] == "fc")
    for key in ("best_update", "updates", "val/roc_auc", "val/accuracy", "val/binary_f1", "test_seen/roc_auc",
                "test_unseen/binary_f1"):
        assert again[key] == before[key], key
    fc_line = next(line for line in result["table2"].splitlines() if line.startswith("| fc |"))
    assert "±" in fc_line and "Training seed(s): 1, 2 " in result["table2"]


def test_robustness_table(demo):
    """The report's evasion table: FC / Full / PE x every attack, normalised and raw text; attacks change inputs;
    the normalised look-alike captions score as the clean ones; a rerun reuses the rows."""
    import csv

    from mmf_pe.demo import robustness_rows as rr

    out, settings, result = demo
    with open(result["markdown"]) as f:
        section = f.read().split("## Evasion attacks (robustness)", 1)[1].split("\n## ", 1)[0]
    for mode in ("**fc**", "**full**", "**pe/paper**"):
        assert mode in section
    with open(os.path.join(out, "robustness", "rows.csv")) as f:
        rows = {(r["mode"], r["attack"], r["normalization"]): r for r in csv.DictReader(f)}
    attacks = rr.TEXT_ATTACKS + rr.PGD_ATTACKS + rr.IMAGE_ATTACKS
    for mode in rr.MODES:
        for attack in attacks:
            for normalization in (rr.NORMALISED, rr.RAW):
                row = rows[(mode, attack, normalization)]
                assert row["originally_correct"] == "0" or 0.0 <= float(row["attack_success"]) <= 1.0, row
                assert f"| {attack} |" in section
        clean = rows[(mode, "clean", rr.NORMALISED)]
        for attack in ("homoglyphs", "homoglyphs+zero_width"):  # the defence: these inputs tokenise as the clean
            assert int(rows[(mode, attack, rr.RAW)]["changed_inputs"]) > 0
            assert rows[(mode, attack, rr.NORMALISED)]["auroc"] == clean["auroc"]
            assert rows[(mode, attack, rr.NORMALISED)]["flipped"] == "0"
        for attack in ("sticker", "gaussian_noise", "pgd"):  # pixels / features changed
            assert int(rows[(mode, attack, rr.NORMALISED)]["changed_inputs"]) == \
                int(rows[(mode, attack, rr.NORMALISED)]["memes"]) > 0
        assert rows[(mode, "typos", rr.RAW)]["same_inputs_as_normalised"] == "True"  # plain ASCII: scored once
    assert "homoglyphs" in result["robustness"]  # the summary `mmf_pe demo` prints at its end
    paths = {"annotations": os.path.join(out, "data", *pipeline.FEATURES_DIR[:-1], "annotations"),
             "root": os.path.join(out, "data", *pipeline.FEATURES_DIR[:-1]),
             "images": os.path.join(out, "data", *pipeline.FEATURES_DIR[:-1], "images")}
    run_dirs = {(name, 1): pipeline.run_dir(out, name, 1) for name in settings.runs}
    said = []
    again = rr.start_stage(out, run_dirs, paths, said.append).result()
    assert said == [f"robustness rows: measured earlier, reused ({os.path.join(out, 'robustness')})"]
    with open(os.path.join(out, "robustness", "rows.json")) as f:
        assert again["rows"] == json.load(f)["rows"]
