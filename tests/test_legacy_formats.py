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


def test_the_converter_on_old_model_nodes():
    """Both families' old nodes: every key flat (a run's config.yaml), `freeze_base` the switch, null = unset."""
    from mmf_pe.tuners.legacy import upgrade_model_config

    frozen = {"freeze_base": True, "training_mode": None, "pe": {"method": "lora", "rank": 2, "alpha": None,
                                                                 "encoders": "both", "reduction_factor": 10}}
    assert upgrade_model_config(frozen, "clip_pe", "lora") == {"training_mode": "pe",
                                                               "pe": {"method": "lora", "lora": {"rank": 2}}}
    fc_run = {"freeze_base": True, "pe": {"method": None, "rank": None, "reduction_factor": 10}}
    assert upgrade_model_config(fc_run, "visual_bert_pe", "paper") == {"training_mode": "fc", "pe": {"method": None}}
    vl_adapter = {"training_mode": "pe", "freeze_base": False, "train_visual_projection": False,
                  "pe": {"method": "paper", "reduction_factor": 10, "train_visual_projection": True, "rank": None}}
    assert upgrade_model_config(vl_adapter, "visual_bert_pe", "paper") == {
        "training_mode": "pe", "train_visual_projection": True,
        "pe": {"method": "paper", "paper": {"reduction_factor": 10}}}
    today = {"training_mode": "pe", "pe": {"method": "lora", "lora": {"rank": 2}, "paper": {"reduction_factor": 10}}}
    assert upgrade_model_config(today, "visual_bert_pe", "paper") == today
    with pytest.raises(ValueError, match="pe.encoders is now model_config.frozen_vl.pe_towers"):
        upgrade_model_config({"pe": {"method": "lora", "encoders": "vision"}}, "frozen_vl", "lora")


def test_old_names_live_in_the_legacy_modules_with_the_version_that_removes_them():
    import importlib

    from mmf_pe.models import legacy as model_legacy
    from mmf_pe.tuners import legacy as core_legacy

    assert core_legacy.REMOVED_IN == model_legacy.REMOVED_IN
    with pytest.warns(FutureWarning, match=f"removed in mmf-pe {core_legacy.REMOVED_IN}"):
        from mmf_pe.tuners.legacy import PaperAdapterOutput
    from mmf_pe.tuners.bottleneck import AdaptBertOutput

    assert PaperAdapterOutput is AdaptBertOutput
    from mmf_pe.experiments import export as experiments_export
    from mmf_pe.tuners import export as core_export

    assert core_export.find_checkpoint is experiments_export.find_checkpoint
    assert importlib.import_module("mmf_pe.models.clip_pe.cache") is importlib.import_module(
        "mmf_pe.models.frozen_vl.cache")
    from mmf.common.registry import registry
    from mmf_pe.models.clip_pe.processors import check_clip_dir

    assert registry.get_model_class("clip_pe") is model_legacy.CLIPPE
    with pytest.warns(FutureWarning), pytest.raises(FileNotFoundError, match="no-clip-here.*not a local CLIP"):
        check_clip_dir("no-clip-here", "clip_dir")
