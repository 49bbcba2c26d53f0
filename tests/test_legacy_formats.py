"""Files written before per-method `pe:` nodes (by main b0ac72c: tests/fixtures/legacy_formats/make_fixtures.py)
load through the one converter (mmf_pe.tuners.legacy) and score as they did then."""
import importlib.util
import json
import os

import pytest
import torch

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "legacy_formats")
with open(os.path.join(FIXTURES, "scores.json")) as f:
    RECORDED = json.load(f)


def _maker():
    spec = importlib.util.spec_from_file_location("make_fixtures", os.path.join(FIXTURES, "make_fixtures.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("run, method, mode_keys", [
    ("run_paper", "paper", {"freeze_base": True, "training_mode": None}),
    ("run_lora", "lora", {"freeze_base": False, "training_mode": "pe"}),
])
def test_old_runs_load_and_score_as_recorded(run, method, mode_keys):
    from mmf_pe.experiments.export import find_checkpoint, load_run_model, read_checkpoint

    _, saved = read_checkpoint(find_checkpoint(os.path.join(FIXTURES, run)))
    old = saved["model_config"]["visual_bert_pe"]
    assert {k: old[k] for k in mode_keys} == mode_keys and "rank" in old["pe"]  # the old layout, as written
    model, _, _, _ = load_run_model(os.path.join(FIXTURES, run))
    assert model.training_mode == "pe" and model.pe_config.method == method
    assert "freeze_base" not in model.config and set(model.config.pe) == {"method", method}
    scores = _maker().run_scores(model, RECORDED["inputs"])
    assert torch.allclose(torch.tensor(scores), torch.tensor(RECORDED["runs"][run]), atol=1e-6)


@pytest.mark.parametrize("adapter", ["adapter_paper", "adapter_lora"])
def test_old_adapters_serve_on_an_old_base_as_recorded(adapter):
    probabilities = _maker().served_probabilities(os.path.join(FIXTURES, "base"), os.path.join(FIXTURES, adapter),
                                                  RECORDED["inputs"])
    assert torch.allclose(torch.tensor(probabilities), torch.tensor(RECORDED["served"][adapter]), atol=1e-6)


def test_old_adapter_loads_onto_its_run_and_reexports_in_the_new_layout(tmp_path):
    from mmf_pe.experiments.export import export, load_run_model
    from mmf_pe.tuners.export import load_adapter, read_adapter

    model, _, _, _ = load_run_model(os.path.join(FIXTURES, "run_lora"))
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.zero_()
    load_adapter(model, os.path.join(FIXTURES, "adapter_lora"))  # the old flat `pe` (train_visual_projection in it)
    scores = _maker().run_scores(model, RECORDED["inputs"])
    assert torch.allclose(torch.tensor(scores), torch.tensor(RECORDED["runs"]["run_lora"]), atol=1e-6)
    export(os.path.join(FIXTURES, "run_lora"), str(tmp_path))
    config, _ = read_adapter(str(tmp_path))
    assert config["pe"] == {"method": "lora", "train_layer_norms": False, "rank": 2, "alpha": 4, "dropout": 0.0,
                            "target_modules": ["attention.self.query", "attention.self.value"]}
