"""`scripts/gpu_check.sh`: the dry run prints every command (it runs here, with no GPU); a real run without a GPU
stops at once naming why."""
import os
import subprocess

import pytest
import torch

from mmf_pe import REPO_ROOT

SCRIPT = os.path.join(REPO_ROOT, "scripts", "gpu_check.sh")


def test_dry_run_prints_every_command(tmp_path):
    result = subprocess.run(["bash", SCRIPT, "--dry-run", "--out", str(tmp_path / "out")], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    runs = [line for line in lines if line.startswith("[dry-run] mmf_run ")]
    assert len(runs) == 9  # FC / Full / PE x fp32 / bf16 / fp16
    for mode in ("fc", "full", "pe"):
        for precision in ("fp32", "bf16", "fp16"):
            line = next(r for r in runs if r.startswith(f"[dry-run] mmf_run {mode} {precision}:"))
            assert f"run_hmd_{mode}.yaml" in line and f"training.precision={precision}" in line
            assert "training.device=cuda" in line
    assert any("benchmark_pe.py --device cuda" in line for line in lines)
    assert any("benchmark_serve.py --device cuda" in line for line in lines)
    assert "| check | result | seconds | log |" in lines
    assert not (tmp_path / "out").exists()  # a dry run writes nothing


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible: the real run is the GPU's job (docs/gpu.md)")
def test_without_a_gpu_it_stops_naming_why(tmp_path):
    result = subprocess.run(["bash", SCRIPT, "--out", str(tmp_path / "out")], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and "no CUDA GPU visible" in result.stderr
    bad = subprocess.run(["bash", SCRIPT, "--dry-run", "--device", "tpu"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--device must be cuda or cuda:N" in bad.stderr
