"""Adapter-only export: round trip, fingerprint / shape / method checks, no unpickling, the CLI on a checkpoint."""
import json
import os
import pickle

import pytest
import torch
from omegaconf import OmegaConf

from mmf_pe.experiments.export import main
from mmf_pe.tuners.export import AdapterMismatchError, load_adapter, read_adapter, save_adapter
from tests.tuners.helpers import build, encode


def trained_like(model, seed=5):
    """Give every trainable parameter new values, as training would."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=generator) * 0.3)
    return model


@pytest.mark.parametrize("method", ["paper", "lora"])
def test_round_trip(method, tmp_path):
    trained = trained_like(build("pe", f"pe.method={method}", seed=0))
    save_adapter(trained, tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["pe"]["method"] == method and config["training_mode"] == "pe"
    names = {n for n, p in trained.named_parameters() if p.requires_grad}
    assert set(config["parameters"]) == names
    fresh = build("pe", f"pe.method={method}", seed=0)  # same base weights (same seed), other adapter values
    assert not torch.allclose(encode(fresh)[1], encode(trained)[1])
    load_adapter(fresh, tmp_path)
    for (name, a), b in zip(trained.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name


def test_fingerprint_mismatch_is_a_clear_error(tmp_path):
    save_adapter(trained_like(build("pe", "pe.method=paper", seed=0)), tmp_path)
    other_base = build("pe", "pe.method=paper", seed=7)
    untouched = other_base.model.classifier[0].dense.weight.clone()
    with pytest.raises(AdapterMismatchError, match="base weights differ.*fingerprint"):
        load_adapter(other_base, tmp_path)
    assert torch.equal(other_base.model.classifier[0].dense.weight, untouched)  # nothing was copied
    load_adapter(other_base, tmp_path, check_fingerprint=False)


def test_method_and_shape_mismatch(tmp_path):
    save_adapter(build("pe", "pe.method=lora", seed=0), tmp_path)
    with pytest.raises(AdapterMismatchError, match="pe.method 'lora'.*'ia3'"):
        load_adapter(build("pe", "pe.method=ia3", seed=0), tmp_path)
    with pytest.raises(AdapterMismatchError, match=r"lora_A.*shape \(8, 32\) in the adapter, \(4, 32\)"):
        load_adapter(build("pe", "pe.method=lora", "pe.lora.rank=4", seed=0), tmp_path)


def test_loading_never_unpickles(tmp_path, monkeypatch):
    trained = trained_like(build("pe", "pe.method=lora", seed=0))
    save_adapter(trained, tmp_path)

    def refuse(*args, **kwargs):
        raise AssertionError("unpickling attempted")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    fresh = build("pe", "pe.method=lora", seed=0)
    load_adapter(fresh, tmp_path, merge=True)  # LoRA folded into the base weights for inference
    assert not fresh.peft_wrapped_paths
    torch.testing.assert_close(encode(fresh)[1], encode(trained)[1], rtol=1e-4, atol=1e-5)
    with open(tmp_path / "adapter_model.safetensors", "rb") as f:  # safetensors: u64 header size + JSON header
        size = int.from_bytes(f.read(8), "little")
        assert json.loads(f.read(size))["__metadata__"]["format"] == "mmf_pe.adapter/1"


def test_bad_json_names_file_and_line(tmp_path):
    save_adapter(build("pe", "pe.method=paper", seed=0), tmp_path)
    (tmp_path / "adapter_config.json").write_text('{\n  "format": \n}')
    with pytest.raises(ValueError, match=r"adapter_config.json: line 3"):
        read_adapter(tmp_path)
    os.remove(tmp_path / "adapter_model.safetensors")
    with pytest.raises(FileNotFoundError, match="adapter_model.safetensors: missing"):
        read_adapter(tmp_path)


def test_cli_on_an_mmf_checkpoint(tmp_path, capsys):
    """`mmf_pe export-adapter` reads an MMF checkpoint (model + config) with weights_only and writes a few %."""
    from mmf_pe.models.visual_bert_family import model_config
    from tests.tuners.helpers import BOTTLENECK, TINY

    model = trained_like(build("pe", "pe.method=houlsby", seed=0))
    config = {"model": "visual_bert_pe", "model_config": {"visual_bert_pe": OmegaConf.to_container(
        model_config("pe", TINY + [f"pe.houlsby.{BOTTLENECK}", "pe.method=houlsby"]))}}
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"model": model.state_dict(), "config": config, "num_updates": 3}, run / "best.ckpt")
    assert main([str(run), str(tmp_path / "out")]) == 0
    assert "best.ckpt ->" in capsys.readouterr().out
    fresh = build("pe", "pe.method=houlsby", seed=0)
    load_adapter(fresh, tmp_path / "out")
    torch.testing.assert_close(encode(fresh)[1], encode(model)[1])
    # *_final.pth (state dict only) + the run's config.yaml
    torch.save(model.state_dict(), run / "visual_bert_pe_final.pth")
    OmegaConf.save(OmegaConf.create(config), run / "config.yaml")
    assert main([str(run), str(tmp_path / "out_final"), "--which", "final"]) == 0
    assert (tmp_path / "out_final" / "adapter_model.safetensors").read_bytes() == \
        (tmp_path / "out" / "adapter_model.safetensors").read_bytes()
    with pytest.raises(FileNotFoundError, match="no best.ckpt"):
        main([str(tmp_path / "out"), str(tmp_path / "x")])
