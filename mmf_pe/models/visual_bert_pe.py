"""`visual_bert_pe`: rc10's VisualBERT with three training modes (FC / Full / PE) and parameter-efficient methods.

The mode is `model_config.visual_bert_pe.training_mode` (fc | full | pe; null = full), the one switch (resolved by the
PE core, mmf_pe.tuners.settings); the method is `pe.method` and its settings `pe.<method>`. Configs in older layouts
(`freeze_base`, flat `pe.<key>`) are converted by mmf_pe.tuners.legacy. PE methods live in `mmf_pe.tuners`.
"""
import json
import os

import torch
from mmf.common.registry import registry
from mmf.models.visual_bert import VisualBERT, VisualBERTForClassification
from mmf.utils.modeling import get_optimizer_parameters_for_bert

from mmf_pe import PACKAGE_DIR
from mmf_pe.models.embeddings import DeviceAwareVisioLinguisticEmbeddings
from mmf_pe.models.paper_checkpoint import paper_key
from mmf_pe.models.pe_node import yaml_with_method_nodes
from mmf_pe.models.pretrained_weights import bert_report
from mmf_pe.tuners import apply_pe_method, pe_config_from, resolve_training_mode
from mmf_pe.tuners.legacy import upgrade_model_node
from mmf_pe.tuners.peft_methods import merge_and_unload, wrapped_key, wrapped_module_paths

MODEL_NAME = "visual_bert_pe"
DEFAULT_MODE = "full"
DEFAULT_METHOD = "paper"




def check_local_weights(path, what):
    """bert_model_name must be a local directory: no hub download is ever attempted."""
    if path is None:
        return
    if not os.path.isdir(path) or not os.path.isfile(os.path.join(path, "config.json")):
        raise FileNotFoundError(
            f"{what}: {path!r} is not a local model directory (config.json + weights). Put a BERT checkpoint there "
            "(bert-base-uncased under $MMF_PE_WEIGHTS_DIR/bert-base-uncased: `mmf_pe download bert-base-uncased`, "
            "from https://huggingface.co/bert-base-uncased), or set "
            "model_config.visual_bert_pe.bert_model_name=null for random initialisation. Nothing is downloaded."
        )


BERT_ARCHITECTURE_KEYS = (
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
    "max_position_embeddings", "type_vocab_size", "layer_norm_eps",
)


def adopt_architecture(config, bert_dir):
    """A local checkpoint's dimensions win over the YAML's (a MiniLM directory just works)."""
    with open(os.path.join(bert_dir, "config.json")) as f:
        pretrained = json.load(f)
    for key in BERT_ARCHITECTURE_KEYS:
        if key in pretrained:
            config[key] = pretrained[key]


@registry.register_model("visual_bert_pe")
class VisualBERTPE(VisualBERT):
    @classmethod
    def config_path(cls):
        return yaml_with_method_nodes(os.path.join(PACKAGE_DIR, "configs", "models", "visual_bert_pe.yaml"),
                                      MODEL_NAME)

    def build(self):
        if self.config.training_head_type != "classification":
            raise ValueError("visual_bert_pe supports training_head_type=classification only")
        bert_dir = self.config.get("bert_model_name", None)
        check_local_weights(bert_dir, "model_config.visual_bert_pe.bert_model_name")
        if bert_dir is not None:
            adopt_architecture(self.config, bert_dir)
        upgrade_model_node(self.config, MODEL_NAME, DEFAULT_METHOD)  # configs of older layouts
        self.training_mode = resolve_training_mode(self.config, DEFAULT_MODE, MODEL_NAME)
        # the method's own config (pe.<method>); unknown keys refused
        self.pe_config = pe_config_from(self.config.get("pe", None), DEFAULT_METHOD)

        self.model = VisualBERTForClassification(self.config)
        bert = self.model.bert
        self.weights_report = None
        if bert_dir is not None:  # what transformers put in (it only warns about missing keys): report, stop if any
            self.weights_report = bert_report(bert, bert_dir)
            self.weights_report.enforce(self.config.get("allow_missing_weights", False),
                                        "model_config.visual_bert_pe.allow_missing_weights")
        if self.config.output_attentions:
            bert.config._attn_implementation = "eager"  # SDPA cannot return attention weights
        if self.config.special_visual_initialize:
            bert.embeddings.initialize_visual_from_pretrained()
        bert.embeddings.__class__ = DeviceAwareVisioLinguisticEmbeddings

        # Names relative to self.model.bert of the parameters the PE method added.
        self.pe_parameter_names = []
        if self.training_mode == "pe":
            self.pe_parameter_names = apply_pe_method(bert, self.pe_config)
        # Layers peft wrapped (their base weights moved to `<path>.base_layer.*`), as paths in this model.
        self.peft_wrapped_paths = {f"model.bert.{path}" for path in wrapped_module_paths(bert)}
        self._set_trainable()

    def _set_trainable(self):
        bert = self.model.bert
        full = self.training_mode == "full"
        for parameter in bert.parameters():
            parameter.requires_grad = full
        if self.training_mode == "pe":
            added = set(self.pe_parameter_names)
            train_layer_norms = self.pe_config.train_layer_norms
            for name, parameter in bert.named_parameters():
                trains = name in added
                trains |= train_layer_norms and "LayerNorm" in name
                parameter.requires_grad = trains
        if self.training_mode in ("fc", "pe") and self.config.get("train_visual_projection", False):
            # the visual projection too: VL-Adapter (pe), or region features no pretrained projection exists for
            # (fc; e.g. the demo's)
            for parameter in bert.embeddings.projection.parameters():
                parameter.requires_grad = True
        for parameter in self.model.classifier.parameters():
            parameter.requires_grad = True

    def format_state_key(self, key):
        """Checkpoint key -> this model's key. Also maps base weights of layers peft wrapped (`X.weight` ->
        `X.base_layer.weight`), so BERT / COCO-VisualBERT checkpoints load into LoRA / IA3 models unchanged, and the
        paper's own adapter names (`output.AdaptComb1/2`) to ours (`output.adapter.down/up`)."""
        key = paper_key(super().format_state_key(key))
        paths = getattr(self, "peft_wrapped_paths", None)
        return wrapped_key(key, paths) if paths else key

    def pretrained_new_keys(self):
        """Model keys no pretrained checkpoint has (the PE method's parameters): not 'missing' when loading one."""
        return [f"model.bert.{name}" for name in self.pe_parameter_names]

    def merge_pe(self):
        """Fold LoRA / IA3 updates into the base weights for inference (plain VisualBERT names afterwards)."""
        merged = merge_and_unload(self.model.bert)
        if merged:
            self.peft_wrapped_paths = set()
            self.pe_parameter_names = []
        return merged

    def parameter_counts(self):
        """total / trained / PE-method parameters (the paper's Table I columns)."""
        named = dict(self.model.bert.named_parameters())
        return {
            "total": sum(p.numel() for p in self.parameters()),
            "trained": sum(p.numel() for p in self.parameters() if p.requires_grad),
            "adapter": sum(named[n].numel() for n in self.pe_parameter_names),
        }

    def get_optimizer_parameters(self, config):
        """MMF's BERT groups (decay 0.01 on weights, 0 on biases/LayerNorm), restricted to parameters that train.

        Parameters the PE method's config exempts (IA3's scaling vectors, which start at 1) join the no-decay group.
        """
        scales = set()
        if self.training_mode == "pe":
            scales = {id(p) for name, p in self.model.bert.named_parameters()
                      if self.pe_config.takes_no_weight_decay(name)}
        groups = []
        for group in get_optimizer_parameters_for_bert(self.model, config):
            params = [p for p in group["params"] if p.requires_grad]
            undecayed = [p for p in params if id(p) in scales]
            params = [p for p in params if id(p) not in scales]
            groups += [{**group, "params": params}] if params else []
            groups += [{**group, "params": undecayed, "weight_decay": 0.0}] if undecayed else []
        return groups

    def add_custom_params(self, sample_list):
        """rc10's version with the region mask built on the features' device (it called `.cuda()`)."""
        visual_embeddings = getattr(sample_list, "visual_embeddings", None)
        image_dim = getattr(sample_list, "image_dim", None)
        sample_list.masked_lm_labels = getattr(sample_list, "lm_label_ids", None)
        if visual_embeddings is not None and image_dim is not None:
            positions = torch.arange(visual_embeddings.size(-2), device=visual_embeddings.device)
            image_mask = positions.expand(*visual_embeddings.size()[:-1])
            image_dim = image_dim.to(visual_embeddings.device)
            if image_dim.dim() < image_mask.dim():
                image_dim = image_dim.unsqueeze(-1)
            sample_list.image_mask = (image_mask < image_dim).long()
        else:
            sample_list.image_mask = None
        sample_list.position_embeddings_visual = None
        return sample_list

    def describe(self):
        counts = self.parameter_counts()
        method = f" ({self.pe_config.method})" if self.training_mode == "pe" else ""
        weights = f"; BERT weights {self.weights_report.summary()}" if self.weights_report else ""
        return (
            f"visual_bert_pe mode={self.training_mode}{method}: total {counts['total']:,}, "
            f"trained {counts['trained']:,}, adapter {counts['adapter']:,}{weights}"
        )

