"""A model's `pe:` node as MMF reads it: one sub-node per registered method, from that method's `defaults.yaml`.

MMF refuses a command-line override whose key is missing from the config (`_merge_with_dotlist`), so the YAML MMF
reads (`config_path()`) must hold every method's keys: the model YAML in mmf_pe/configs/models names only `method`
and what the model changes in a method's defaults (frozen_vl: no BERT target paths); this module writes a copy with
`pe.<method>` = the method's defaults + those changes, for every registered method the model takes (a method
registered elsewhere, a new folder or a user_dir, included). Then `model_config.visual_bert_pe.pe.lora.rank=16`.
"""
import hashlib
import os
import tempfile

import yaml

from mmf_pe.tuners import PE_METHODS
from mmf_pe.tuners.settings import method_defaults_node
from mmf_pe.utils.io import atomic_write_text


def with_method_nodes(model_node, methods=None):
    """`model_node` (a dict) with `pe.<method>` filled from each method's defaults (the node's own values win)."""
    methods = sorted(PE_METHODS) if methods is None else methods
    pe = dict(model_node.get("pe") or {})
    for method in methods:
        pe[method] = method_defaults_node(method, pe.get(method))
    return {**model_node, "pe": pe}


def yaml_with_method_nodes(yaml_path, model_name, methods=None):
    """A copy of the model YAML (in the temp dir, named by its content) with every method's sub-node filled."""
    with open(yaml_path) as f:
        data = yaml.safe_load(f)
    data["model_config"][model_name] = with_method_nodes(data["model_config"][model_name], methods)
    text = f"# {yaml_path} with pe.<method> from each method's defaults.yaml (mmf_pe/models/pe_node.py)\n"
    text += yaml.safe_dump(data, sort_keys=False)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = os.path.join(tempfile.gettempdir(), f"mmf_pe-{os.getuid()}", f"{model_name}-{digest}.yaml")
    if not os.path.isfile(path):
        atomic_write_text(path, text)
    return path
