"""Reports from generated run directories: expected Table I/II numbers, valid PNGs, robust discovery."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from mmf_pe.reporting import build_report, find_runs
from mmf_pe.reporting.cli import main as report_main

PARAMS = {"fc": (1000, 10, 0), "full": (1000, 1000, 0), "pe/paper": (1100, 110, 100)}
# (mode, seed) -> val roc_auc at the best (last) evaluation; test_seen roc_auc
VAL = {("fc", 1): 0.60, ("fc", 2): 0.64, ("full", 1): 0.70, ("full", 2): 0.74, ("pe/paper", 1): 0.71,
       ("pe/paper", 2): 0.75}


def _write_run(directory, mode, seed, with_test=True):
    logs = os.path.join(directory, "logs")
    os.makedirs(os.path.join(logs, "predictions"))
    total, trained, adapter = PARAMS[mode]
    training_mode, _, method = mode.partition("/")
    events = [{"event": "run", "schema": 1, "model": "visual_bert_pe", "dataset": "hateful_memes", "mode": mode,
               "training_mode": training_mode, "pe_method": method or None, "seed": seed,
               "params": {"total": total, "trained": trained, "adapter": adapter}}]
    best = VAL[(mode, seed)]
    for step, auroc in ((100, best - 0.1), (200, best)):
        events.append({"event": "eval", "step": step, "split": "val", "dataset": "hateful_memes", "is_best": True,
                       "metrics": {"roc_auc": auroc, "accuracy": 0.5 + seed / 100, "binary_f1": 0.4}, "n": 8})
    rng = np.random.default_rng(seed)
    targets = np.array([0, 1] * 20)
    probabilities = np.clip(targets * 0.3 + rng.uniform(0, 0.7, 40), 0, 1)
    with open(os.path.join(logs, "predictions", "val.csv"), "w") as f:
        f.write("id,proba,target,prediction\n")
        f.writelines(f"{i},{p},{t},{int(p > 0.5)}\n" for i, (p, t) in enumerate(zip(probabilities, targets)))
    events.append({"event": "final", "step": 200, "split": "val", "dataset": "hateful_memes", "n": 40,
                   "metrics": {"roc_auc": best, "accuracy": 0.5 + seed / 100, "binary_f1": 0.4},
                   "predictions": "predictions/val.csv"})
    events.append({"event": "end", "step": 200, "status": "completed"})
    if with_test:
        events.append({"event": "test", "step": 200, "split": "test_seen", "dataset": "hateful_memes",
                       "metrics": {"roc_auc": best - 0.05, "accuracy": 0.6, "binary_f1": 0.5}, "n": 40})
    with open(os.path.join(logs, "metrics.jsonl"), "w") as f:
        f.writelines(json.dumps(e) + "\n" for e in events)


@pytest.fixture
def run_root(tmp_path):
    root = tmp_path / "runs"
    for (mode, seed) in VAL:
        _write_run(str(root / mode.replace("/", "_") / f"seed_{seed}"), mode, seed)
    return root


def test_report_numbers_tables_and_pngs(run_root, tmp_path):
    paths = build_report([str(run_root)], str(tmp_path / "report"))  # a folder of runs, found recursively
    assert paths["runs"] == 6
    summary = json.load(open(paths["summary"]))
    table1 = {row["mode"]: row for row in summary["table1"]}
    assert table1["pe/paper"]["total"] == 1100 and table1["pe/paper"]["adapter"] == 100
    assert table1["pe/paper"]["trained_pct"] == pytest.approx(10.0) and table1["fc"]["runs"] == 2
    table2 = {(row["mode"], row["split"]): row for row in summary["table2"]}
    val = table2[("full", "val")]["roc_auc"]
    assert val["mean"] == pytest.approx(0.72) and val["std"] == pytest.approx(np.std([0.70, 0.74], ddof=1))
    assert val["n"] == 2 and table2[("full", "val")]["seeds"] == [1, 2]
    assert table2[("fc", "test_seen")]["roc_auc"]["mean"] == pytest.approx(0.57)
    assert table2[("fc", "val")]["accuracy"]["mean"] == pytest.approx(0.515)

    markdown = open(paths["markdown"]).read()
    assert "| visual_bert_pe | pe/paper | 1,100 | 110 | 10.00 % | 100 |" in markdown
    assert "| hateful_memes | full | val | 0.7200 ± 0.0283 | 0.5150 ± 0.0071 | 0.4000 ± 0.0000 | 1, 2 |" in markdown
    rows = [line for line in markdown.splitlines() if line.startswith("| hateful_memes |")]
    assert [r.split(" | ")[1:3] for r in rows[:4]] == [["fc", "val"], ["fc", "test_seen"], ["full", "val"],
                                                       ["full", "test_seen"]]

    assert sorted(os.path.basename(p) for p in paths["plots"]) == ["auroc_vs_updates_hateful_memes.png",
                                                                   "roc_hateful_memes_val.png"]
    for path in paths["plots"]:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.size in ((640, 420), (520, 500))
            assert len(set(image.convert("L").getdata())) > 10  # something was drawn
        assert f"]({os.path.basename(path)})" in markdown


def test_report_cli_and_bad_input(run_root, tmp_path, capsys):
    out = tmp_path / "cli_report"
    assert report_main([str(run_root / "fc" / "seed_1"), "--out", str(out)]) == 0
    assert "1 run(s)" in capsys.readouterr().out and (out / "report.md").exists()
    with pytest.raises(FileNotFoundError, match="no metrics.jsonl under"):
        build_report([str(tmp_path / "cli_report")], str(tmp_path / "x"))


def test_unfinished_run_uses_best_evaluation(tmp_path):
    run = tmp_path / "run"
    _write_run(str(run), "fc", 1, with_test=False)
    path = run / "logs" / "metrics.jsonl"
    lines = [line for line in path.read_text().splitlines() if '"final"' not in line and '"end"' not in line]
    path.write_text("\n".join(lines) + '\n{"event": "eval", "step": 3')  # killed mid-line
    with pytest.warns(UserWarning, match="metrics.jsonl:4"):
        (loaded,) = find_runs([str(run)])
    assert loaded.status is None and loaded.best_step == 200 and loaded.results["val"]["roc_auc"] == 0.60
