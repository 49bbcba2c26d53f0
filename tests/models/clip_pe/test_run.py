"""Real MMF runs (in-process `mmf_cli.run.run`) of projects/clip_pe configs on generated memes with a tiny CLIP."""
import os

import pytest

from mmf_pe_testing import metric_values, read_log
from tests.models.clip_pe.helpers import write_clip_run_config


@pytest.fixture
def run_mmf(clip_hmd, monkeypatch):
    monkeypatch.setenv("MMF_DATA_DIR", clip_hmd["data_dir"])
    monkeypatch.setenv("WANDB_MODE", "disabled")

    def run(config_path, save_dir, *opts):
        from mmf_cli.run import run as mmf_run

        mmf_run([f"config={config_path}", "model=clip_pe", "dataset=hateful_memes", f"env.save_dir={save_dir}",
                 *opts])
        return read_log(save_dir)

    return run


def cache_entries(clip_hmd):
    import lmdb

    root = os.path.join(clip_hmd["data_dir"], "clip_pe_cache")
    counts = {}
    for name in os.listdir(root):
        env = lmdb.open(os.path.join(root, name, "embeddings.lmdb"), readonly=True, lock=False)
        counts[name] = env.stat()["entries"]
        env.close()
    return counts


def test_cross_trains_with_cache_and_reuses_it(clip_hmd, run_mmf, tmp_path):
    config = write_clip_run_config(tmp_path, "hmd_cross.yaml")
    log = run_mmf(config, tmp_path / "first")
    assert len(metric_values(log)) >= 2  # val/hateful_memes/roc_auc at every evaluation and the final check
    assert "clip_pe mode=fc fusion=cross map_dim=16" in log and "embedding cache" in log
    (fingerprint, entries), = cache_entries(clip_hmd).items()
    # every train/val meme's image and text, once: 32 train + 16 dev_seen memes, texts may repeat
    assert 48 <= entries <= 96
    second = run_mmf(config, tmp_path / "second")
    assert f"{fingerprint} ({entries} entries)" in second
    assert cache_entries(clip_hmd) == {fingerprint: entries}
    assert metric_values(second)[-1] == pytest.approx(metric_values(log)[-1])  # same seed, same embeddings


def test_concat_and_lora_train(run_mmf, tmp_path):
    concat = run_mmf(write_clip_run_config(tmp_path, "hmd_concat.yaml"), tmp_path / "concat")
    assert metric_values(concat) and "fusion=concat" in concat
    lora_yaml = "model_config:\n  clip_pe:\n    pe:\n      lora:\n        rank: 2\n"
    lora = run_mmf(write_clip_run_config(tmp_path, "hmd_lora.yaml", lora_yaml), tmp_path / "lora")
    assert metric_values(lora) and "clip_pe mode=pe (lora)" in lora
    assert "adapter 0;" not in lora


def test_missing_clip_dir_fails_naming_it(run_mmf, tmp_path):
    config = write_clip_run_config(tmp_path, "hmd_cross.yaml",
                                   f"model_config:\n  clip_pe:\n    clip_dir: {tmp_path}/absent-clip\n")
    with pytest.raises(FileNotFoundError, match="absent-clip"):
        run_mmf(config, tmp_path / "save")
