"""Real MMF runs (rc10 on this stack) of the three configs on tiny generated data."""
import glob
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from mmf_pe import REPO_ROOT
from mmf_pe_testing import PROJECT, metric_values, mmf_subprocess, write_run_config

BASE = ["model=visual_bert_pe", "dataset=hateful_memes"]


def _state(path):
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("model", state)


@pytest.mark.parametrize("mode", ["fc", "full", "pe"])
def test_mmf_run_trains_exactly_the_intended_parameters(mode, mmf_inprocess, tmp_path):
    config = write_run_config(tmp_path, f"hmd_{mode}.yaml")
    # Same seed, 0 updates: the initial weights (rc10 writes <model>_final.pth at the end of training).
    mmf_inprocess([f"config={config}", *BASE, "training.max_updates=0"], tmp_path / "init")
    log = mmf_inprocess([f"config={config}", *BASE, "training.max_updates=20"], tmp_path / "run")

    assert len(metric_values(log)) >= 2, "val/hateful_memes/roc_auc is reported at each evaluation"
    for name in ("val/hateful_memes/accuracy", "val/hateful_memes/binary_f1"):
        assert metric_values(log, name)
    initial = _state(tmp_path / "init" / "visual_bert_pe_final.pth")
    final = _state(tmp_path / "run" / "visual_bert_pe_final.pth")
    assert initial.keys() == final.keys()
    changed = {k for k in initial if not torch.equal(initial[k], final[k])}
    frozen_prefix = "model.bert."
    if mode == "fc":
        assert changed and all(k.startswith("model.classifier.") for k in changed)
    elif mode == "pe":
        assert any(".output.adapter." in k for k in changed)
        assert all(k.startswith("model.classifier.") or ".output.adapter." in k for k in changed)
        assert any(k.startswith(frozen_prefix) and ".adapter." not in k for k in initial)
    else:
        assert any(".attention.self.query." in k for k in changed) and any("embeddings.word_" in k for k in changed)


def test_plain_mmf_run_from_any_directory_with_project_config(mmf_data_env, tmp_path):
    """`config=projects/visual_bert_pe/hmd_pe.yaml` resolves and visual_bert_pe is registered, with no MMF_USER_DIR;
    then mmf_predict writes its CSV."""
    with open(os.path.join(PROJECT, "tiny.yaml")) as f:
        tiny = [item for item in _dotlist(yaml.safe_load(f)) if not item.startswith("dataset_config.mmh.")]
    save = tmp_path / "save"
    env = {"MMF_USER_DIR": ""}
    args = ["config=projects/visual_bert_pe/hmd_pe.yaml", *BASE, *tiny, f"env.save_dir={save}"]
    result = mmf_subprocess(args + ["training.max_updates=10"], mmf_data_env["data_dir"], cwd=str(tmp_path), env=env)
    assert "Total Parameters:" in result.stdout
    assert metric_values(result.stdout)
    assert (save / "best.ckpt").exists()

    predict = mmf_subprocess(
        args + ["run_type=test", f"checkpoint.resume_file={save / 'best.ckpt'}", "checkpoint.resume_pretrained=False"],
        mmf_data_env["data_dir"], cwd=str(tmp_path), tool="mmf_predict", env=env,
    )
    csvs = glob.glob(str(save / "**" / "*.csv"), recursive=True)
    assert csvs, predict.stdout[-3000:]
    with open(csvs[0]) as f:
        lines = f.read().strip().splitlines()
    assert lines[0].replace(" ", "") == "id,proba,label"
    assert len(lines) - 1 == 16  # test_seen of the tiny dataset


def test_killed_run_resumes_from_last_checkpoint(mmf_data_env, tmp_path):
    config = write_run_config(tmp_path, "hmd_pe.yaml")
    save = tmp_path / "save"
    args = [f"config={config}", *BASE, f"env.save_dir={save}", "training.max_updates=400",
            "training.checkpoint_interval=5", "training.evaluation_interval=400", "training.log_interval=5"]
    env = dict(os.environ, MMF_DATA_DIR=mmf_data_env["data_dir"])
    process = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "mmf_run"), *args], cwd=str(tmp_path),
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not glob.glob(str(save / "models" / "model_10.ckpt")) and time.time() < deadline:
        assert process.poll() is None, "run ended before it could be killed"
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    # current.ckpt is what resume reads (written atomically, after models/model_<n>.ckpt)
    last = torch.load(save / "current.ckpt", map_location="cpu", weights_only=True)["num_updates"]
    assert 0 < last < 400
    saved = [last]

    resumed = mmf_subprocess(args[:-4] + ["training.max_updates=" + str(saved[-1] + 10), "checkpoint.resume=True",
                                          "training.checkpoint_interval=5", "training.log_interval=5",
                                          "training.evaluation_interval=400"],
                             mmf_data_env["data_dir"], cwd=str(tmp_path))
    progress = [int(p) for p in _progress(resumed.stdout)]
    assert progress and min(progress) > saved[-1], "training continued after the last checkpoint, not from 0"
    assert max(progress) >= saved[-1] + 10


def test_missing_data_is_a_clear_error(tmp_path, monkeypatch, mmf_inprocess):
    from mmf_pe.data.checks import DataCheckError

    monkeypatch.setenv("MMF_DATA_DIR", str(tmp_path / "empty"))
    config = write_run_config(tmp_path, "hmd_pe.yaml")
    with pytest.raises(DataCheckError) as info:
        mmf_inprocess([f"config={config}", *BASE], tmp_path / "save")
    message = str(info.value)
    assert os.path.join("annotations", "train.jsonl") in message and "mmf_convert_hm" in message
    assert "detectron.lmdb" in message and "mmf_pe extract" in message


def test_malformed_annotation_line_names_file_and_line(tmp_path):
    from mmf_pe.data.checks import DataCheckError, check_jsonl

    path = tmp_path / "train.jsonl"
    path.write_text('{"id": 1, "text": "a", "img": "img/1.png"}\n{"id": 2, "text": \n')
    with pytest.raises(DataCheckError, match=r"train\.jsonl:2: not valid JSON"):
        check_jsonl(str(path))


def test_missing_pretrained_checkpoint_names_the_path(mmf_inprocess, tmp_path):
    from mmf_pe.data.checks import DataCheckError

    config = write_run_config(tmp_path, "hmd_pe.yaml",
                              "checkpoint:\n  resume_file: /nonexistent/visual_bert_coco/model.pth\n")
    with pytest.raises(DataCheckError, match="/nonexistent/visual_bert_coco/model.pth"):
        mmf_inprocess([f"config={config}", *BASE], tmp_path / "save")


def _progress(text):
    import re

    return re.findall(r"progress: (\d+)/", text)


def _dotlist(tree, prefix=""):
    items = []
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            items += _dotlist(value, f"{prefix}{key}.")
        else:
            items.append(f"{prefix}{key}={value}")  # MMF's command line: None, True, False
    return items


def test_interrupted_feature_extraction_is_reported(tiny_hmd, tmp_path):
    import json
    import shutil

    from omegaconf import OmegaConf

    from mmf_pe.data.checks import check_dataset

    root = tmp_path / "datasets" / "hateful_memes" / "defaults"
    shutil.copytree(tiny_hmd["root"], root)
    config = OmegaConf.load(os.path.join(REPO_ROOT, "mmf_pe", "configs", "mmf", "datasets", "hateful_memes",
                                         "defaults.yaml")).dataset_config.hateful_memes
    config.data_dir = str(tmp_path / "datasets")
    config.processors.text_processor.params.tokenizer_config.type = tiny_hmd["tokenizer"]
    assert check_dataset("hateful_memes", config) == []
    (root / "features" / "detectron.lmdb" / "extraction.json").write_text(json.dumps({"state": "running"}))
    problems = check_dataset("hateful_memes", config)
    assert problems and all("interrupted" in p for p in problems)
