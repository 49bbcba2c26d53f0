"""A short real `mmf_run` (in process) trains each PE method, and only it; LoRA starts from a base checkpoint."""
import os

import pytest
import torch

from mmf_pe.tools.table1 import build_model
from mmf_pe_testing import metric_values, write_run_config
from tests.tuners.helpers import METHODS, build, trained_by_method

RUN = ["model=visual_bert_pe", "dataset=hateful_memes", "run_type=train", "training.max_updates=4",
       "training.checkpoint_interval=2", "training.evaluation_interval=100", "training.log_interval=2"]
# tiny.yaml's architecture, for a stand-in "pretrained" checkpoint
TINY_YAML_ARCH = ["hidden_size=32", "num_hidden_layers=2", "num_attention_heads=2", "intermediate_size=64",
                  "max_position_embeddings=64", "visual_embedding_dim=32"]


def run_config(tmp_path, method):
    """The users' YAML for `method` (+ tiny.yaml); a method without one (e.g. a new folder) goes through hmd_pe.yaml
    with its pe.method set (hmd_pe.yaml's pe.paper node is not read then: no key to null)."""
    from mmf_pe import REPO_ROOT

    own = "hmd_pe.yaml" if method == "paper" else f"hmd_pe_{method}.yaml"
    if os.path.isfile(os.path.join(REPO_ROOT, "projects", "visual_bert_pe", own)):
        return [f"config={write_run_config(tmp_path, own)}"]
    return [f"config={write_run_config(tmp_path, 'hmd_pe.yaml')}", f"model_config.visual_bert_pe.pe.method={method}"]


@pytest.mark.parametrize("method", METHODS)
def test_short_mmf_run_trains_only_the_method(method, mmf_inprocess, tmp_path):
    opts = run_config(tmp_path, method) + RUN
    base = None
    if method == "lora":  # initialise from a base VisualBERT checkpoint through MMF's pretrained mapping
        torch.manual_seed(123)
        base = build_model("fc", TINY_YAML_ARCH).state_dict()
        torch.save(base, tmp_path / "base.pth")
        # hmd_base.yaml maps model.bert -> model.bert (checkpoint.pretrained_state_mapping)
        opts += [f"checkpoint.resume_file={tmp_path / 'base.pth'}", "checkpoint.resume_pretrained=true"]
    save = tmp_path / "save"
    log = mmf_inprocess(opts, save)
    assert f"mode=pe ({method})" in log
    assert "progress: 4/4" in log
    first, last = (torch.load(save / "models" / f"model_{u}.ckpt", weights_only=True)["model"] for u in (2, 4))
    changed = {k for k in first if not torch.equal(first[k], last[k])}
    reference = build("pe", f"pe.method={method}")  # same layer count as tiny.yaml: the same parameter names
    owned = {f"model.bert.{n}" for n in reference.pe_parameter_names}
    assert owned <= set(first), owned - set(first)
    assert changed & owned, "no parameter of the method changed"
    allowed = trained_by_method(reference)
    assert changed <= allowed, changed - allowed
    if base is not None:
        assert "Copying model.bert.encoder.layer.0.attention.self.query.base_layer.weight" in log
        torch.testing.assert_close(last["model.bert.encoder.layer.1.attention.self.value.base_layer.weight"],
                                   base["model.bert.encoder.layer.1.attention.self.value.weight"], rtol=0, atol=0)
        from mmf_pe.experiments.export import main

        assert main([str(save), str(tmp_path / "adapter")]) == 0
        assert os.path.getsize(tmp_path / "adapter" / "adapter_model.safetensors") < 0.1 * os.path.getsize(
            save / "current.ckpt")
        _exported_adapter_scores_like_the_run(opts, log, tmp_path, mmf_inprocess)


def _exported_adapter_scores_like_the_run(opts, train_log, tmp_path, mmf_inprocess):
    """`model_config.visual_bert_pe.load_adapter`: base checkpoint + export (merged or not) evaluate val exactly as
    the run's best checkpoint did; without the base weights the fingerprint check refuses it."""
    from mmf_pe.tuners.export import AdapterMismatchError

    expected = metric_values(train_log, "val/total_loss")[-1]  # rc10's final validation = the best checkpoint
    evaluate = [o for o in opts if not o.startswith("run_type=")] + [
        "run_type=val", f"model_config.visual_bert_pe.load_adapter={tmp_path / 'adapter'}"]
    for merge in ("False", "True"):
        log = mmf_inprocess(evaluate + [f"model_config.visual_bert_pe.merge_adapter={merge}"],
                            tmp_path / f"eval{merge}")
        assert "Loaded adapter" in log
        assert metric_values(log, "val/total_loss")[-1] == pytest.approx(expected, abs=1e-4)
    without_base = [o for o in evaluate if not o.startswith("checkpoint.resume")]
    with pytest.raises(AdapterMismatchError, match="base weights differ"):
        mmf_inprocess(without_base, tmp_path / "eval_no_base")
