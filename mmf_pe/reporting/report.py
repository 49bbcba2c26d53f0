"""build_report: runs -> report.md + PNGs + summary.json in one folder."""
import json
import os

from mmf_pe.reporting.plots import make_plots
from mmf_pe.reporting.runs import find_runs
from mmf_pe.reporting.tables import table1_markdown, table1_rows, table2_markdown, table2_rows
from mmf_pe.utils.io import atomic_write_text


def _runs_markdown(runs, out_dir):
    lines = ["| Run | Dataset | Mode | Seed | Best update | Status |", "|---|---|---|---:|---:|---|"]
    for run in sorted(runs, key=lambda r: (r.dataset, r.mode, str(r.seed))):
        where = os.path.relpath(run.path, out_dir) if run.path else run.metrics_file
        lines.append(f"| `{where}` | {run.dataset} | {run.mode} | {run.seed if run.seed is not None else '—'} | "
                     f"{run.best_step if run.best_step is not None else '—'} | {run.status or 'unfinished'} |")
    return "\n".join(lines)


def plots_markdown(plots):
    """A '## Plots' section for [(caption, png path)] (the PNGs sit beside report.md)."""
    if not plots:
        return []
    return ["## Plots"] + [f"### {caption}\n\n![{caption}]({os.path.basename(path)})" for caption, path in plots]


def summary_tables(runs):
    """Table I and II as JSON-ready rows (metric cells as {mean, std, n})."""
    table2 = [{**row, **{k: dict(zip(("mean", "std", "n"), row[k])) for k in ("roc_auc", "accuracy", "binary_f1")}}
              for row in table2_rows(runs)]
    return {"table1": table1_rows(runs), "table2": table2}


def write_report_files(out_dir, sections, plots, runs, **summary_extra):
    """report.md (sections + plots) and summary.json (tables + extra keys), atomically. Returns both paths."""
    markdown = os.path.join(out_dir, "report.md")
    atomic_write_text(markdown, "\n\n".join(list(sections) + plots_markdown(plots)) + "\n")
    summary = os.path.join(out_dir, "summary.json")
    atomic_write_text(summary, json.dumps({**summary_tables(runs), **summary_extra}, indent=2) + "\n")
    return markdown, summary


def build_report(run_dirs, out_dir, title="mmf-pe report"):
    """Write `report.md`, plots and `summary.json` (the tables' numbers) under out_dir.

    run_dirs: run save dirs, their log dirs, metrics.jsonl files, or folders holding runs (searched recursively).
    Returns {"markdown": path, "summary": path, "plots": [paths], "runs": number of runs}.
    """
    runs = find_runs([str(p) for p in run_dirs])
    if not runs:
        raise ValueError(f"report: no readable run among {list(run_dirs)}")
    os.makedirs(out_dir, exist_ok=True)
    plots = make_plots(runs, out_dir)
    sections = [
        f"# {title}",
        f"{len(runs)} run(s). Val = the best checkpoint on the validation split; test splits from `mmf_pe evaluate`. "
        "Values are mean ± sample std over seeds.",
        "## Runs", _runs_markdown(runs, out_dir),
        "## Table I: parameters per mode", table1_markdown(runs),
        "## Table II: metrics per dataset, mode and split", table2_markdown(runs),
    ]
    markdown, summary = write_report_files(out_dir, sections, plots, runs)
    return {"markdown": markdown, "summary": summary, "plots": [p for _, p in plots], "runs": len(runs)}
