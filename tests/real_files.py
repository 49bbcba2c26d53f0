"""Small files in the exact layouts their publishers ship (see ../shared/reference/real-files.md).

- `write_hub_bert(dir)`: a Hugging Face `bert-base-uncased` directory as the hub holds it today: config.json,
  vocab.txt, tokenizer.json, tokenizer_config.json, model.safetensors and pytorch_model.bin, `BertForPreTraining`
  weights (`bert.*` + `cls.*` heads) under the TF-era LayerNorm names (`gamma` / `beta`). Tiny dimensions.
- `coco_visual_bert_state(...)`: the state dict of MMF's VisualBERT pretraining model (`model.bert.*` +
  `model.cls.predictions.*` / `model.cls.seq_relationship.*` heads a classifier does not use), and
  `write_zoo_folder(dir, state, wrapped)`: the zoo tarball's content (`model.pth` bare or `{"model": ...}` +
  `config.yaml`).
- `as_paper_run(run_dir, paper_dir)`: one of our PE runs saved the way the paper's patched code saves it (model
  visual_bert, `output.AdaptComb1/2`).
"""
import json
import os

import torch
from omegaconf import OmegaConf

from mmf_pe.testing.tiny_hmd import local_tokenizer_dir

TINY_BERT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
             "max_position_embeddings": 64, "type_vocab_size": 2, "vocab_size": 30522}
MODEL_ARCH = ["hidden_size=32", "num_hidden_layers=2", "num_attention_heads=2", "intermediate_size=64",
              "max_position_embeddings=64", "visual_embedding_dim=16", "hidden_dropout_prob=0.0",
              "attention_probs_dropout_prob=0.0", "pe.paper.reduction_factor=4"]


def tf_era_name(key):
    return key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")


def hub_bert_state(seed=0):
    """A random BertForPreTraining's weights under the hub's names (gamma/beta, bert.* + cls.*)."""
    from transformers import BertConfig, BertForPreTraining

    torch.manual_seed(seed)
    model = BertForPreTraining(BertConfig(**TINY_BERT))
    state = {tf_era_name(k): v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    state.pop("cls.predictions.decoder.weight", None)  # tied to the word embeddings: the hub files store it once
    return state


def write_hub_bert(directory, state=None, drop=()):
    from safetensors.torch import save_file

    os.makedirs(directory, exist_ok=True)
    state = dict(hub_bert_state() if state is None else state)
    for key in drop:
        del state[key]
    config = {"architectures": ["BertForMaskedLM"], "model_type": "bert", "hidden_act": "gelu",
              "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02,
              "layer_norm_eps": 1e-12, "pad_token_id": 0, "position_embedding_type": "absolute",
              "transformers_version": "4.6.0.dev0", "use_cache": True, **TINY_BERT}
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(local_tokenizer_dir(), "vocab.txt"), "rb") as src:
        vocab = src.read()
    with open(os.path.join(directory, "vocab.txt"), "wb") as f:
        f.write(vocab)
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
        json.dump({"do_lower_case": True, "model_max_length": 512}, f)
    tokenizer_json = os.path.join(local_tokenizer_dir(), "tokenizer.json")
    if os.path.isfile(tokenizer_json):
        with open(tokenizer_json, "rb") as src, open(os.path.join(directory, "tokenizer.json"), "wb") as f:
            f.write(src.read())
    save_file(state, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})
    torch.save(state, os.path.join(directory, "pytorch_model.bin"))
    return state


def coco_visual_bert_state(seed=1, visual_dim=16):
    """MMF's VisualBERT pretraining model's keys and shapes, random values (encoder + heads)."""
    from mmf_pe.tools.table1 import build_model

    torch.manual_seed(seed)
    model = build_model("full", MODEL_ARCH + [f"visual_embedding_dim={visual_dim}", "vocab_size=30522"])
    state = {k: torch.randn_like(v) if v.is_floating_point() else v.clone()
             for k, v in model.state_dict().items() if k.startswith("model.bert.")}
    hidden, vocab = TINY_BERT["hidden_size"], TINY_BERT["vocab_size"]
    state.update({
        "model.cls.predictions.bias": torch.randn(vocab),
        "model.cls.predictions.transform.dense.weight": torch.randn(hidden, hidden),
        "model.cls.predictions.transform.dense.bias": torch.randn(hidden),
        "model.cls.predictions.transform.LayerNorm.weight": torch.randn(hidden),
        "model.cls.predictions.transform.LayerNorm.bias": torch.randn(hidden),
        "model.cls.predictions.decoder.weight": state["model.bert.embeddings.word_embeddings.weight"].clone(),
        "model.cls.seq_relationship.weight": torch.randn(2, hidden),
        "model.cls.seq_relationship.bias": torch.randn(2),
    })
    return state


def write_zoo_folder(directory, state, wrapped=False):
    """A zoo tarball's content: model.pth (bare or {"model": ...}) and the config.yaml MMF keeps beside it."""
    os.makedirs(directory, exist_ok=True)
    torch.save({"model": state} if wrapped else state, os.path.join(directory, "model.pth"))
    with open(os.path.join(directory, "config.yaml"), "w") as f:
        f.write("model_config:\n  visual_bert:\n    training_head_type: pretraining\n")
    return os.path.join(directory, "model.pth")


PAPER_ARCHITECTURE = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size",
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
    config.model_config = {"visual_bert": {**{k: ours[k] for k in PAPER_ARCHITECTURE}, "freeze_base": True,
                                           "bert_model_name": "bert-base-uncased",
                                           "training_head_type": "classification"}}
    checkpoint.update(model=renamed, config=OmegaConf.to_container(config))
    torch.save(checkpoint, os.path.join(paper_dir, "best.ckpt"))
    OmegaConf.save(config, os.path.join(paper_dir, "config.yaml"))
