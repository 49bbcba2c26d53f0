"""Real 2-process gloo runs of hmd_pe on tiny data through scripts/train.sh --cpu-procs 2.

Same seed, same global batch (8 = 2 x 4), same global sample order (mmf_pe/launch/sampling.py), dropout off (tiny.yaml):
the per-update training losses, the final weights and the global val roc_auc equal a 1-process run's. Tolerances: losses
as logged (4 decimals) within 2e-4; weights within 1e-5 absolute (float32 sums in another order; seen: ~1e-8).
"""
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from mmf_pe import REPO_ROOT
from mmf_pe_testing import metric_values, read_log, write_run_config

TRAIN_SH = os.path.join(REPO_ROOT, "scripts", "train.sh")
EQUAL_RUN = """
training:
  max_updates: 12
  log_interval: 1
  evaluation_interval: 12
  checkpoint_interval: 12
"""


def train_sh(args, data_dir, save_dir, **popen):
    command = [TRAIN_SH, "hmd", "pe"] + list(args) + [f"env.save_dir={save_dir}"]
    env = dict(os.environ, MMF_DATA_DIR=data_dir, PYTHON=sys.executable)
    return subprocess.Popen(command, env=env, text=True, stdout=popen.pop("stdout", subprocess.PIPE),
                            stderr=subprocess.STDOUT, **popen)


def run_to_end(args, data_dir, save_dir, timeout=400):
    process = train_sh(args, data_dir, save_dir)
    out, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, out[-6000:]
    return out


def train_losses(log_text):
    return {int(n): float(v) for n, v in re.findall(r"progress: (\d+)/\d+, train/total_loss: ([0-9.]+)", log_text)}


def weights(save_dir, update):
    return torch.load(os.path.join(save_dir, "models", f"model_{update}.ckpt"), map_location="cpu")["model"]


def test_two_gloo_processes_match_one_process(tmp_path, mmf_data_env, mmf_inprocess):
    config = write_run_config(tmp_path, "hmd_pe.yaml", EQUAL_RUN)
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    log_one = mmf_inprocess([f"config={config}", "model=visual_bert_pe", "dataset=hateful_memes"], one)
    out = run_to_end(["--cpu-procs", "2", "--config", config], mmf_data_env["data_dir"], two)
    log_two = read_log(two)

    assert "distributed.backend=gloo" in out and "--nproc_per_node 2" in out
    ddp = re.search(r"DDP over 2 processes \(gloo\): all-reduces ([\d,]+) trained .* skips ([\d,]+) frozen; "
                    r"find_unused_parameters=False", log_two)
    assert ddp and int(ddp.group(2).replace(",", "")) > 0, "PE mode: frozen weights must stay out of DDP's buckets"
    assert "DDP over" not in log_one
    # rank 0 alone logs (one log file, each line once)
    assert log_two.count("Starting training...") == 1
    assert len(os.listdir(os.path.join(two, "logs"))) == len(os.listdir(os.path.join(one, "logs")))

    losses_one, losses_two = train_losses(log_one), train_losses(log_two)
    # rc10 stops once num_updates > max_updates: 13 updates for max_updates=12, in both runs
    assert sorted(losses_one) == list(range(1, 14)) and sorted(losses_two) == sorted(losses_one)
    assert len(set(losses_one.values())) > 3  # the losses move: the comparison means something
    for update, loss in losses_one.items():
        assert abs(losses_two[update] - loss) <= 2e-4, (update, loss, losses_two[update])

    final_one, final_two = weights(one, 12), weights(two, 12)
    assert final_one.keys() == final_two.keys()
    worst = max((final_one[k].float() - final_two[k].float()).abs().max().item() for k in final_one)
    assert worst <= 1e-5, f"final weights differ by {worst}"

    auc_one, auc_two = metric_values(log_one), metric_values(log_two)
    assert auc_one and len(auc_one) == len(auc_two)
    assert auc_two == pytest.approx(auc_one, abs=1e-4)  # the global roc_auc (gathered predictions), not a rank mean


def _children(pid):
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(child) for child in f.read().split()]
        except FileNotFoundError:
            pass
    return found


def _kill_workers(launcher):
    """SIGKILL the ranks (torchrun starts them in their own sessions), as a crashed node would; torchrun then exits."""
    for pid in _children(launcher.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_killed_two_process_run_resumes(tmp_path, mmf_data_env):
    config = write_run_config(tmp_path, "hmd_pe.yaml", """
training:
  max_updates: 16
  log_interval: 4
  evaluation_interval: 16
  checkpoint_interval: 4
""")
    save_dir, data_dir = str(tmp_path / "run"), mmf_data_env["data_dir"]
    current = os.path.join(save_dir, "current.ckpt")
    with open(tmp_path / "first.out", "w") as out:
        first = train_sh(["--cpu-procs", "2", "--config", config], data_dir, save_dir, stdout=out)
        try:
            deadline = time.time() + 300
            while not os.path.exists(current) and first.poll() is None and time.time() < deadline:
                time.sleep(0.05)
            assert os.path.exists(current), (tmp_path / "first.out").read_text()[-5000:]
            _kill_workers(first)
            assert first.wait(timeout=120) != 0
        finally:
            if first.poll() is None:
                _kill_workers(first)
                first.kill()
                first.wait()
    saved = torch.load(current, map_location="cpu")["num_updates"]
    assert 4 <= saved < 16, f"the run was not killed mid-way (checkpoint at update {saved})"
    assert not os.path.exists(os.path.join(save_dir, "models", "model_16.ckpt"))

    run_to_end(["--cpu-procs", "2", "--config", config, "checkpoint.resume=True"], data_dir, save_dir)
    resumed = read_log(save_dir).split("Starting training...")[-1]
    updates = [int(n) for n in re.findall(r"progress: (\d+)/16, train/total_loss", resumed)]
    assert updates and updates[0] == saved + 4 and updates[-1] == 16  # counts go on from the checkpoint
    assert torch.load(os.path.join(save_dir, "models", "model_16.ckpt"), map_location="cpu")["num_updates"] == 16
