"""`visual_bert_pe`'s side of the model contract (mmf_pe.models.contract): built from a run config or its defaults,
the paper's checkpoint names, its served base (`base_model.safetensors` + the run's BERT tokenizer) and how a request
(text + region features) becomes VisualBERT's sample fields through MMF's own `bert_tokenizer` processor.
"""
import json
import os
import shutil

import torch

from mmf_pe import PACKAGE_DIR
from mmf_pe.models.contract import (
    BASE_CONFIG,
    BASE_FORMAT,
    ContractError,
    Family,
    RequestError,
    ServedBase,
    register_family,
    write_manifest,
)
from mmf_pe.utils.io import atomic_write_bytes, atomic_write_text

BASE_WEIGHTS = "base_model.safetensors"
TOKENIZER_DIR = "tokenizer"
TOKENIZER_FILES = ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json")
MODEL_KEYS = (
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
    "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "initializer_range", "visual_embedding_dim",
    "num_labels", "training_head_type", "embedding_strategy", "bypass_transformer", "special_visual_initialize",
    "output_attentions", "output_hidden_states", "random_initialize", "hidden_dropout_prob",
    "attention_probs_dropout_prob",
)


def _mmf():
    from mmf_pe.compat import install

    install()
    import mmf.utils.env  # noqa: F401  (registers MMF's components)


def model_config(mode, overrides=()):
    """visual_bert_pe's default config (bert-base dimensions, random init) for one training mode."""
    import yaml
    from omegaconf import OmegaConf

    from mmf_pe.models.pe_node import yaml_with_method_nodes

    base = OmegaConf.load(yaml_with_method_nodes(os.path.join(PACKAGE_DIR, "configs", "models", "visual_bert_pe.yaml"),
                                                 "visual_bert_pe"))
    config = base.model_config.visual_bert_pe
    config.training_mode = mode
    if mode == "pe" and not config.pe.method:
        config.pe.method = "paper"
    for item in overrides:
        key, value = item.split("=", 1)
        OmegaConf.update(config, key, yaml.safe_load(value) if value else None, merge=True)
    return config


def _plain(value):
    from omegaconf import OmegaConf

    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def text_processor(run_config):
    """The run's text processor node ({"type", "params"}) of its first dataset that has one."""
    for dataset in (run_config.get("dataset_config") or {}).values():
        processor = ((dataset or {}).get("processors") or {}).get("text_processor") or {}
        if processor.get("params"):
            return processor
    return {}


def text_processor_params(run_config):
    return text_processor(run_config).get("params") or {}


class VisualBERTFamily(Family):
    names = ("visual_bert_pe",)
    reads_region_features = True

    def build_default(self, mode, overrides=()):
        _mmf()
        from mmf_pe.models.visual_bert_pe import VisualBERTPE

        model = VisualBERTPE(model_config(mode, overrides))
        model.build()
        return model

    def build(self, run_config):
        from omegaconf import OmegaConf

        _mmf()
        from mmf_pe.models.visual_bert_pe import VisualBERTPE, adopt_architecture

        node = OmegaConf.create((run_config.get("model_config") or {}).get("visual_bert_pe") or {})
        try:
            bert_dir = node.get("bert_model_name", None)
        except Exception:  # an unresolved interpolation such as ${env.weights_dir}/...: the YAML's dimensions are used
            bert_dir = None
        if bert_dir and os.path.isfile(os.path.join(str(bert_dir), "config.json")):
            adopt_architecture(node, bert_dir)
        node.bert_model_name = None  # the checkpoint provides every weight
        model = VisualBERTPE(node)
        model.build()
        return model

    def read_run(self, state, config):
        from mmf_pe.models.paper_checkpoint import as_pe_run_config, is_paper_state

        if is_paper_state(state):  # the paper's own `output.AdaptComb1/2` names, `model: visual_bert`: PE paper
            config = as_pe_run_config(config, state)
        return state, config

    def checkpoint_keys(self, state):
        from mmf_pe.models.paper_checkpoint import paper_key

        return {paper_key(k) for k in super().checkpoint_keys(state)}

    def evaluate_options(self, state, saved_config):
        from mmf_pe.models.paper_checkpoint import evaluate_options, is_paper_state

        if not is_paper_state(state):
            return []
        return evaluate_options(state, saved_config.model_config.get(saved_config.model, None))

    def export_base(self, model, run_config, out_dir, default_adapter=None, tokenizer_dir=None, max_seq_length=None,
                    **options):
        """`base_model.safetensors` (every base weight under its plain VisualBERT name; PE-added tensors left out),
        the run's tokenizer and text-processor settings, a manifest of the files."""
        from safetensors.torch import save

        from mmf_pe.tuners.peft_methods.model import base_key

        params = text_processor_params(run_config or {})
        tokenizer_dir = tokenizer_dir or (params.get("tokenizer_config") or {}).get("type")
        if not tokenizer_dir or not os.path.isfile(os.path.join(str(tokenizer_dir), "vocab.txt")):
            raise FileNotFoundError(f"no local tokenizer directory (vocab.txt) in the run config ({tokenizer_dir!r}); "
                                    "pass --tokenizer DIR")
        max_seq_length = int(max_seq_length or params.get("max_seq_length", 128))
        os.makedirs(out_dir, exist_ok=True)
        added = {f"model.bert.{name}" for name in getattr(model, "pe_parameter_names", [])}
        state = {base_key(n): p.detach().contiguous().cpu() for n, p in model.named_parameters() if n not in added}
        atomic_write_bytes(os.path.join(out_dir, BASE_WEIGHTS), save(state, metadata={"format": BASE_FORMAT}))
        tokenizer_out = os.path.join(out_dir, TOKENIZER_DIR)
        os.makedirs(tokenizer_out, exist_ok=True)
        for name in os.listdir(tokenizer_dir):
            if name in TOKENIZER_FILES:
                shutil.copyfile(os.path.join(tokenizer_dir, name), os.path.join(tokenizer_out, name))
        config = {"format": BASE_FORMAT, "model": self.name,
                  "model_config": {k: _plain(model.config.get(k)) for k in MODEL_KEYS if k in model.config},
                  "max_seq_length": max_seq_length, "default_adapter": default_adapter,
                  "files": write_manifest(out_dir)}
        atomic_write_text(os.path.join(out_dir, BASE_CONFIG), json.dumps(config, indent=2) + "\n")
        return out_dir

    def run_inputs(self, run_config, device="cpu"):
        return RunInputs(run_config, device)

    def open_base(self, directory, config, device="cpu", embedding_cache_bytes=0):
        return VisualBERTBase(self, directory, config, device)


class VisualBERTBase(ServedBase):
    """VisualBERT over region features: images go through the server's detector (features as at training)."""

    takes_images = True
    takes_features = True
    uses_detector = True

    def __init__(self, family, directory, config, device="cpu"):
        super().__init__(family, directory, config, device)
        self.model_config = config.get("model_config") or {}
        self.feature_dim = int(self.model_config.get("visual_embedding_dim", 2048))
        self.max_seq_length = int(config.get("max_seq_length", 128))
        self._tokenizer = None

    def row_stages(self, model):
        """Each encoder layer, the pooler, the classifier (MMF's VisualBERT without `bypass_transformer`)."""
        bert = model.model.bert
        if getattr(bert, "bypass_transformer", False):
            return None
        layers = [f"model.bert.encoder.layer.{i}" for i in range(len(bert.encoder.layer))]
        return layers + ["model.bert.pooler", "model.classifier"]

    def load_tensors(self):
        from safetensors.torch import load_file

        path = os.path.join(self.directory, BASE_WEIGHTS)
        if not os.path.isfile(path):
            raise ContractError(f"{path}: missing; a {self.family.name} base holds {BASE_WEIGHTS}, {BASE_CONFIG} and "
                                f"{TOKENIZER_DIR}/ (see docs/serving.md)")
        return load_file(path)

    def kind_key(self, adapter_config, tensors, where):
        architecture = adapter_config.get("architecture") or {}
        clashes = {k: (v, self.model_config[k]) for k, v in architecture.items()
                   if k in self.model_config and self.model_config[k] != v}
        if clashes:
            text = ", ".join(f"{k}: adapter {a!r} vs base {b!r}" for k, (a, b) in clashes.items())
            raise ContractError(f"{where}: architecture differs from the base: {text}")
        mode = adapter_config["training_mode"]
        pe = adapter_config.get("pe") if mode == "pe" else None
        projection = any(n.startswith("model.bert.embeddings.projection.") for n in tensors)
        return json.dumps([mode, pe, projection], sort_keys=True)

    def build_model(self, adapter_config, tensors, where):
        from omegaconf import OmegaConf

        _mmf()
        from mmf_pe.models.visual_bert_pe import VisualBERTPE

        mode = adapter_config["training_mode"]
        config = model_config(mode)
        for key, value in self.model_config.items():
            config[key] = value
        config.bert_model_name = None
        config.training_mode = mode
        config.train_visual_projection = any(n.startswith("model.bert.embeddings.projection.") for n in tensors)
        if mode == "pe":  # the export's flat settings of one method -> the method's node
            from mmf_pe.tuners import method_settings

            method, settings = method_settings(adapter_config.get("pe"))
            config.pe = OmegaConf.create({"method": method, method: settings})
        model = VisualBERTPE(config)
        model.build()
        return model

    @property
    def tokenizer(self):
        """The run's text processor: MMF's `bert_tokenizer` over the base's tokenizer directory."""
        if self._tokenizer is None:
            from omegaconf import OmegaConf

            _mmf()
            from mmf.common.registry import registry

            params = OmegaConf.create({"tokenizer_config": {"type": os.path.join(self.directory, TOKENIZER_DIR),
                                                            "params": {"do_lower_case": True}},
                                       "max_seq_length": self.max_seq_length})
            self._tokenizer = registry.get_processor_class("bert_tokenizer")(params)
        return self._tokenizer

    def prepare(self, text, image=None, features=None):
        if features is None:
            raise RequestError(f"the {self.family.name} base scores region features: send them, or an image the "
                               "server's detector turns into them", "features")
        return self.tokenizer({"text": text}), features

    def collate(self, texts, items):
        return region_batch(items, self.feature_dim, self.device)


class RunInputs:
    """A run's own text processor (as its config names it) + region-feature batching, for its model offline. Text
    normalisation is left to the caller, as in serving (the caller applies the mode the run or export records)."""

    def __init__(self, run_config, device="cpu"):
        from omegaconf import OmegaConf

        _mmf()
        from mmf.common.registry import registry

        processor = text_processor(run_config)
        params = dict(processor.get("params") or {})
        if "text_normalization" in params:
            params["text_normalization"] = "none"
        self.tokenizer = registry.get_processor_class(processor.get("type") or "bert_tokenizer")(
            OmegaConf.create(params))
        architecture = ((run_config.get("model_config") or {}).get("visual_bert_pe") or {})
        self.feature_dim = int(architecture.get("visual_embedding_dim", 2048))
        self.device = torch.device(device)

    def prepare(self, text, image=None, features=None):
        if features is None:
            raise RequestError("visual_bert_pe scores region features: give them", "features")
        return self.tokenizer({"text": text}), features

    def collate(self, texts, items):
        return region_batch(items, self.feature_dim, self.device)


def region_batch(items, feature_dim, device):
    """MMF's SampleList of (tokenised text, (N_i, D) features) items, features zero-padded to the longest (the
    copy into the padded tensor keeps gradients to the given features)."""
    from mmf.common.sample import Sample, SampleList

    features = [f for _, f in items]
    regions = max(f.shape[0] for f in features)
    visual = torch.zeros(len(features), regions, feature_dim, device=features[0].device)
    for i, f in enumerate(features):
        visual[i, : f.shape[0]] = f
    sample = SampleList()
    sample.input_ids = torch.stack([t["input_ids"] for t, _ in items]).to(device)
    sample.input_mask = torch.stack([t["input_mask"] for t, _ in items]).to(device)
    sample.segment_ids = torch.stack([t["segment_ids"] for t, _ in items]).to(device)
    sample.image_feature_0 = visual.to(device)
    sample.image_info_0 = Sample({"max_features": torch.tensor([f.shape[0] for f in features])})
    for name in ("visual_embeddings_type", "image_text_alignment", "lm_label_ids"):
        sample[name] = None
    return sample


register_family(VisualBERTFamily())
