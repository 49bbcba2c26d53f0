"""Hostile and broken files, the training-run side (issue 19: items 2, 3, 6, 7, 8, 11, 12, 13).

Real MMF runs (in process, tiny data) where a run is needed; the kill -9 is a real SIGKILL of a real `mmf_run`-style
process. Each test pins the clear outcome: nothing silently dropped, no NaN checkpoint, every bad record named.
"""
import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import warnings

import numpy as np
import pytest
import torch

from mmf_pe_testing import write_run_config

RUN = ["model=visual_bert_pe", "dataset=hateful_memes", "run_type=train", "training.log_interval=100",
       "training.evaluation_interval=4", "model_config.visual_bert_pe.hidden_dropout_prob=0.1"]


def run_opts(tmp_path, *extra):
    return [f"config={write_run_config(tmp_path, 'hmd_pe.yaml')}"] + RUN + list(extra)


def model_state(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def assert_finite_checkpoints(save_dir):
    paths = [os.path.join(root, name) for root, _, names in os.walk(save_dir) for name in names
             if name.endswith((".ckpt", ".pth"))]
    for path in paths:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("model", state)
        bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        assert not bad, (path, bad)
    return paths


# ---- item 12 (F25) + item 8 resume fallback (F27): exact resume after a real kill -9 --------------------------------
KILL_AT = textwrap.dedent("""
    import os, signal, sys
    from mmf_pe.compat import install
    install()
    from mmf_pe.trainers.mmf_pe_trainer import MMFPETrainer
    original = MMFPETrainer._extract_loss
    def extract(self, report):
        if self.num_updates + 1 == {kill_at}:  # after the checkpoint of update {saved}: SIGKILL, as a user's kill -9
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, report)
    MMFPETrainer._extract_loss = extract
    from mmf_cli.run import run
    run({opts!r})
""")


def test_f25_resume_after_kill_9_is_exact_and_f27_falls_back(mmf_inprocess, mmf_data_env, tmp_path):
    """Item 12 + item 8's resume: killed (SIGKILL) after update 7 of 10, with current.ckpt and models/model_6.ckpt then
    cut short (as by a full disk), `checkpoint.resume=True` falls back to models/model_3.ckpt, the newest loadable
    one, with a warning, and reaches the uninterrupted run's weights at update 9 (dropout on, an epoch boundary at 8)."""
    opts = run_opts(tmp_path, "training.max_updates=10", "training.checkpoint_interval=3",
                    "training.evaluation_interval=100")
    whole = tmp_path / "whole"
    mmf_inprocess(opts, whole)

    killed = tmp_path / "killed"
    code = KILL_AT.format(kill_at=8, saved=6, opts=opts + [f"env.save_dir={killed}"])
    result = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, MMF_DATA_DIR=mmf_data_env["data_dir"]),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert result.returncode == -signal.SIGKILL, result.stdout[-3000:]
    assert torch.load(killed / "current.ckpt", weights_only=True)["num_updates"] == 6
    for name in ("current.ckpt", os.path.join("models", "model_6.ckpt")):
        with open(killed / name, "r+b") as f:
            f.truncate(os.path.getsize(killed / name) // 2)

    with pytest.warns(UserWarning, match=r"current.ckpt cannot be read .*resuming from .*model_3.ckpt, the newest"):
        log = mmf_inprocess(opts + ["checkpoint.resume=True"], killed)
    assert "Resuming inside epoch 1: its first 3 batches" in log
    expected = model_state(whole / "models" / "model_9.ckpt")
    resumed = model_state(killed / "models" / "model_9.ckpt")
    for name in expected:
        torch.testing.assert_close(resumed[name], expected[name], rtol=0, atol=1e-6, msg=name)
