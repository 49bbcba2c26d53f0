"""Real MMF runs (in-process `mmf_cli.run.run`) of each encoder's projects/frozen_vl config on generated memes with
tiny random encoders: training, evaluation, the report label `<encoder>-<fusion>`."""
import json
import os

import pytest

from mmf_pe_testing import metric_values, read_log
from tests.models.frozen_vl.helpers import write_run_config


@pytest.fixture
def run_mmf(vl_hmd, monkeypatch):
    monkeypatch.setenv("MMF_DATA_DIR", vl_hmd["data_dir"])
    monkeypatch.setenv("WANDB_MODE", "disabled")

    def run(config_path, save_dir, *opts):
        from mmf_cli.run import run as mmf_run

        mmf_run([f"config={config_path}", "model=frozen_vl", "dataset=hateful_memes", f"env.save_dir={save_dir}",
                 *opts])
        return read_log(save_dir)

    return run


def run_event(save_dir):
    path = os.path.join(str(save_dir), "logs", "metrics.jsonl")
    with open(path) as f:
        return next(e for e in map(json.loads, f) if e.get("event") == "run")


@pytest.mark.parametrize("config,label", [
    ("hmd_clip_cross.yaml", "clip-cross/fc"),
    ("hmd_blip_concat.yaml", "blip-concat/fc"),
    ("hmd_blip_itm_concat.yaml", "blip_itm-concat/fc"),
    ("hmd_blip2_concat.yaml", "blip2-concat/fc"),
])
def test_each_encoder_trains_in_mmf_run(run_mmf, tmp_path, config, label):
    save_dir = tmp_path / "save"
    log = run_mmf(write_run_config(tmp_path, config), save_dir, "training.max_updates=4")
    assert len(metric_values(log)) >= 1
    encoder = label.split("-")[0]
    assert f"frozen_vl[{encoder}] mode=fc" in log and "embedding cache" in log and "in memory" in log
    assert run_event(save_dir)["mode"] == label
