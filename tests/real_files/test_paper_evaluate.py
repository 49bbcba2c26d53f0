"""`mmf_pe evaluate` on a run of the paper's patched setup (model visual_bert, `output.AdaptComb1/2` in best.ckpt)
scores it as the run that wrote the weights: the same run saved under our names and under the paper's give equal
predictions."""
import os

import torch
from omegaconf import OmegaConf

from mmf_pe_testing import write_run_config

ARCHITECTURE = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size",
                "max_position_embeddings", "visual_embedding_dim", "num_labels")


def as_paper_run(run_dir, paper_dir):
    """The run's best.ckpt and config.yaml as the paper's code would have written them."""
    os.makedirs(paper_dir)
    checkpoint = torch.load(os.path.join(run_dir, "best.ckpt"), map_location="cpu", weights_only=True)
    renamed = {k.replace(".output.adapter.down.", ".output.AdaptComb1.").replace(".output.adapter.up.",
                                                                                  ".output.AdaptComb2."): v
               for k, v in checkpoint["model"].items()}
    assert sum("AdaptComb" in k for k in renamed) == 8  # 2 layers x down/up x weight/bias
    config = OmegaConf.load(os.path.join(run_dir, "config.yaml"))
    ours = config.model_config.visual_bert_pe
    config.model = "visual_bert"
    config.model_config = {"visual_bert": {**{k: ours[k] for k in ARCHITECTURE}, "freeze_base": True,
                                           "bert_model_name": "bert-base-uncased",
                                           "training_head_type": "classification"}}
    checkpoint.update(model=renamed, config=OmegaConf.to_container(config))
    torch.save(checkpoint, os.path.join(paper_dir, "best.ckpt"))
    OmegaConf.save(config, os.path.join(paper_dir, "config.yaml"))


def test_evaluate_scores_a_paper_run_as_the_run_itself(mmf_inprocess, tmp_path):
    from mmf_pe.experiments.evaluate import evaluate_run

    config = write_run_config(tmp_path, "hmd_pe.yaml")
    save = str(tmp_path / "run")
    mmf_inprocess([f"config={config}", "model=visual_bert_pe", "dataset=hateful_memes", "training.max_updates=4",
                   "training.evaluation_interval=4", "training.checkpoint_interval=4"], save)
    paper = str(tmp_path / "paper_run")
    as_paper_run(save, paper)
    ours = evaluate_run(save, splits=["test_seen"])
    theirs = evaluate_run(paper, splits=["test_seen"])
    assert theirs == ours
    predictions = [open(os.path.join(d, "logs", "predictions", "test_seen.csv")).read() for d in (save, paper)]
    assert predictions[0] == predictions[1] and len(predictions[0].splitlines()) == 17
