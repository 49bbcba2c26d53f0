"""A real (tiny) MMF run with tracking on: metrics.jsonl, W&B offline, TensorBoard; then evaluate and report."""
import glob
import json
import os

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from mmf_pe.tracking import find_metrics_file, read_events
from mmf_pe_testing import read_log, write_run_config
from tests.tracking.helpers import record_downloads, wandb_history

SECRET = "mmfpe-test-secret-key-0123456789"
ADMIN_TOKEN = "mmfpe-test-admin-token-9876543210"
PASSWORD = "literal-password-under-a-secret-key"
# values that reach the config through ${oc.env:...} and a secret-looking key; logged too (log_detailed_config)
SECRET_YAML = f"""training:
  log_detailed_config: true
  run_note: "admin ${{oc.env:MMF_PE_ADMIN_TOKEN}}"
  wandb:
    api_key: ${{oc.env:WANDB_API_KEY}}
  db_password: {PASSWORD}
"""


@pytest.fixture(scope="module")
def tracked_run(tiny_hmd, tmp_path_factory):
    """One 20-update PE run (evaluations at 10 and 20) with W&B offline and TensorBoard, network unreachable."""
    from mmf_cli.run import run as mmf_run

    root = tmp_path_factory.mktemp("tracked")
    config = write_run_config(tmp_path_factory.mktemp("tracked_config"), "hmd_pe.yaml", SECRET_YAML)  # not in root
    save_dir, wandb_dir = root / "save", root / "wandb_home"
    environment = {"MMF_DATA_DIR": tiny_hmd["data_dir"], "WANDB_MODE": "offline", "WANDB_DIR": str(wandb_dir),
                   "WANDB_API_KEY": SECRET, "MMF_PE_ADMIN_TOKEN": ADMIN_TOKEN,
                   "WANDB_BASE_URL": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
                   "HTTP_PROXY": "http://127.0.0.1:9"}
    downloads = []  # every call into MMF's download code or ours during the run (none expected)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in environment.items():
            patch.setenv(key, value)
        record_downloads(patch, downloads)
        mmf_run([f"config={config}", "model=visual_bert_pe", "dataset=hateful_memes", f"env.save_dir={save_dir}",
                 "training.wandb.enabled=True", "training.tensorboard=True"])
    return {"save_dir": str(save_dir), "wandb_dir": str(wandb_dir), "root": str(root), "data": tiny_hmd,
            "downloads": downloads}


def test_a_run_downloads_nothing(tracked_run):
    """`zoo_requirements: []` makes rc10's builder ask the zoo for hateful_memes' default requirement; the zoo MMF reads
    here is the empty stand-in, so nothing is fetched (and pre-flight stops a run with missing files before that)."""
    assert tracked_run["downloads"] == []
    from mmf.utils.configuration import get_zoo_config

    assert get_zoo_config("hateful_memes", "defaults", "configs/zoo/datasets.yaml", "datasets") == (None, None)


def test_metrics_jsonl_has_val_roc_auc_at_each_evaluation(tracked_run):
    events = read_events(find_metrics_file(tracked_run["save_dir"]))
    run = events[0]
    assert run["event"] == "run" and run["mode"] == "pe/paper" and run["seed"] == 1
    assert run["params"]["adapter"] > 0 and run["params"]["trained"] < run["params"]["total"]
    evals = [e for e in events if e["event"] == "eval"]
    assert [e["step"] for e in evals][:2] == [10, 20]  # evaluation_interval 10 of 20 updates (+ rc10's final check)
    for e in evals:
        assert 0.0 <= e["metrics"]["roc_auc"] <= 1.0 and e["n"] == 32 and e["split"] == "val"
    assert [e["step"] for e in events if e["event"] == "train"] == [5, 10, 15, 20]
    assert all("lr" in e["metrics"] and "loss" in e["metrics"] for e in events if e["event"] == "train")
    final = [e for e in events if e["event"] == "final"][-1]
    best = [e for e in evals if e["is_best"]][-1]
    assert final["step"] == best["step"] and final["metrics"]["roc_auc"] == pytest.approx(best["metrics"]["roc_auc"])
    assert events[-1]["event"] == "end" and events[-1]["status"] == "completed"
    log_dir = os.path.dirname(find_metrics_file(tracked_run["save_dir"]))
    with open(os.path.join(log_dir, final["predictions"])) as f:
        assert f.readline().strip() == "id,proba,target,prediction" and len(f.readlines()) == 32


def test_wandb_offline_run_holds_the_logged_metrics(tracked_run):
    events = read_events(find_metrics_file(tracked_run["save_dir"]))
    rows, config, summary = wandb_history(tracked_run["wandb_dir"])
    auroc = {row["_step"]: row["val/hateful_memes/roc_auc"] for row in rows if "val/hateful_memes/roc_auc" in row}
    expected = {e["step"]: e["metrics"]["roc_auc"] for e in events if e["event"] == "eval"}
    assert auroc == pytest.approx(expected)
    assert any("train/total_loss" in row and "train/lr" in row for row in rows)
    assert any(key.endswith("roc_curve_table/_type") for row in rows for key in row)  # ROC curve per evaluation
    assert any(key.endswith("pr_curve_table/_type") for row in rows for key in row)
    assert config["run"]["params"] == events[0]["params"]
    assert summary["best/val/hateful_memes/roc_auc"] == pytest.approx(
        [e for e in events if e["event"] == "final"][-1]["metrics"]["roc_auc"])
    # no secret anywhere: W&B files, MMF config/logs, checkpoints (the run config file itself names only ${oc.env:..})
    for path in glob.glob(os.path.join(tracked_run["root"], "**", "*"), recursive=True):
        if os.path.isfile(path):
            with open(path, "rb") as f:
                content = f.read()
            for secret in (SECRET, ADMIN_TOKEN, PASSWORD):
                assert secret.encode() not in content, (secret, path)
    saved = OmegaConf.load(os.path.join(tracked_run["save_dir"], "config.yaml")).training
    assert (saved.run_note, saved.wandb.api_key, saved.db_password) == ("admin <redacted>", "<redacted>", "<redacted>")
    assert config["mmf"]["training"]["db_password"] == "<redacted>"
    best = torch.load(os.path.join(tracked_run["save_dir"], "best.ckpt"), map_location="cpu", weights_only=True)
    assert best["config"]["training"]["wandb"]["api_key"] == "<redacted>"
    assert best["config"]["dataset_config"]["hateful_memes"]["processors"]["text_processor"]["params"][
        "tokenizer_config"]["type"]  # a key with "token" in a longer word is kept
    log = read_log(tracked_run["save_dir"])
    assert '"db_password": "<redacted>"' in log and '"run_note": "admin <redacted>"' in log


def test_tensorboard_holds_rc10_scalars_and_ours(tracked_run):
    """rc10's writer logs the meter's scalars; ours adds lr, a PR curve per evaluation and the parameter counts."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = glob.glob(os.path.join(tracked_run["save_dir"], "logs", "tensorboard*", "events.out.tfevents.*"))
    assert files
    tags = {"scalars": set(), "tensors": set()}
    steps = {}
    for path in files:
        events = EventAccumulator(path, size_guidance={"tensors": 0, "scalars": 0}).Reload()
        for kind in tags:
            for tag in events.Tags()[kind]:
                tags[kind].add(tag)
                read = events.Scalars if kind == "scalars" else events.Tensors
                steps.setdefault(tag, set()).update(event.step for event in read(tag))
    assert {"val/hateful_memes/roc_auc", "train/lr"} <= tags["scalars"], tags["scalars"]
    assert {10, 20} <= steps["val/hateful_memes/roc_auc"] and {5, 10, 15, 20} <= steps["train/lr"]
    assert "val/hateful_memes/pr_curve" in tags["tensors"], tags["tensors"]
    assert {10, 20} <= steps["val/hateful_memes/pr_curve"]
    assert any(tag.startswith("run/parameters") for tag in tags["tensors"])


def test_evaluate_then_report(tracked_run, monkeypatch):
    from mmf_pe.experiments.evaluate import evaluate_run
    from mmf_pe.reporting import build_report

    monkeypatch.setenv("MMF_DATA_DIR", tracked_run["data"]["data_dir"])
    results = evaluate_run(tracked_run["save_dir"])
    assert list(results) == ["test_seen", "test_unseen"]
    events = read_events(find_metrics_file(tracked_run["save_dir"]))
    tests = {e["split"]: e for e in events if e["event"] == "test"}
    final_step = [e for e in events if e["event"] == "final"][-1]["step"]
    for split in ("test_seen", "test_unseen"):
        assert tests[split]["step"] == final_step and tests[split]["checkpoint"] == "best.ckpt"
        assert tests[split]["n"] == 16 and tests[split]["metrics"]["roc_auc"] == results[split]["roc_auc"]

    paths = build_report([tracked_run["save_dir"]], os.path.join(tracked_run["root"], "report"))
    summary = json.load(open(paths["summary"]))
    rows = {row["split"]: row for row in summary["table2"]}
    assert set(rows) == {"val", "test_seen", "test_unseen"}
    assert rows["test_unseen"]["roc_auc"]["mean"] == pytest.approx(results["test_unseen"]["roc_auc"])
    names = sorted(os.path.basename(p) for p in paths["plots"])
    assert names == ["auroc_vs_updates_hateful_memes.png", "roc_hateful_memes_test_seen.png",
                     "roc_hateful_memes_test_unseen.png", "roc_hateful_memes_val.png"]
    for path in paths["plots"]:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] > 300


def test_evaluate_refuses_a_checkpoint_missing_weights(tracked_run, monkeypatch):
    """rc10 loads with strict=False; evaluate must not score a half-random model."""
    import torch

    from mmf_pe.experiments.evaluate import EvaluateError, evaluate_run

    monkeypatch.setenv("MMF_DATA_DIR", tracked_run["data"]["data_dir"])
    checkpoint = torch.load(os.path.join(tracked_run["save_dir"], "best.ckpt"), map_location="cpu", weights_only=True)
    dropped = sorted(checkpoint["model"])[:2]
    for name in dropped:
        del checkpoint["model"][name]
    partial = os.path.join(tracked_run["save_dir"], "partial.ckpt")
    torch.save(checkpoint, partial)
    try:
        with pytest.raises(EvaluateError, match=r"partial\.ckpt lacks 2 of the model's weights"):
            evaluate_run(tracked_run["save_dir"], splits=["test_seen"], checkpoint="partial.ckpt")
    finally:
        os.remove(partial)


@pytest.mark.skipif(not __import__("shutil").which("tesseract"), reason="needs Debian tesseract-ocr tesseract-ocr-eng")
def test_evaluate_with_ocr_text_scores_the_text_read_from_the_images(tracked_run, monkeypatch, tmp_path):
    """Images that hold no text: OCR reads nothing, so the split is scored on empty text (not the given captions)."""
    import csv

    from mmf_pe.experiments.evaluate import evaluate_run

    monkeypatch.setenv("MMF_DATA_DIR", tracked_run["data"]["data_dir"])
    annotations = glob.glob(os.path.join(tracked_run["data"]["data_dir"], "**", "test_seen.jsonl"), recursive=True)
    records = [json.loads(line) for line in open(annotations[0]) if line.strip()]
    for record in records:
        path = tmp_path / record["img"]
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 64), (200, 120, 40)).save(path)
    given = evaluate_run(tracked_run["save_dir"], splits=["test_seen"])
    results = evaluate_run(tracked_run["save_dir"], splits=["test_seen"], text_source="ocr", image_root=str(tmp_path))
    assert list(results) == ["test_seen_ocr"] and list(given) == ["test_seen"]
    log_dir = os.path.dirname(find_metrics_file(tracked_run["save_dir"]))
    scored = [json.loads(line) for line in open(os.path.join(log_dir, "ocr", "test_seen.0.scored.jsonl"))]
    assert [r["text"] for r in scored] == [""] * len(records)
    assert [r["given_text"] for r in scored] == [r["text"] for r in records]
    event = [e for e in read_events(find_metrics_file(tracked_run["save_dir"])) if e["event"] == "test"][-1]
    assert event["split"] == "test_seen_ocr" and event["text_source"] == "ocr" and event["n"] == len(records)

    def probabilities(split):
        with open(os.path.join(log_dir, "predictions", f"{split}.csv")) as f:
            return sorted(row for row in csv.reader(f))
    assert probabilities("test_seen_ocr") != probabilities("test_seen")  # the text scored changed
