"""Every registered PE method's keys in a model's `pe:` node, so any of them can be overridden on the command line.

MMF refuses a command-line override whose key is missing from the config (`_merge_with_dotlist`). The shipped YAML
lists the keys of the shipped methods (null = the method's default); a method registered elsewhere (a new folder, a
user_dir) may bring keys it lacks: then MMF is given a copy of the YAML with those keys added as null.
"""
import hashlib
import os
import tempfile

import yaml

from mmf_pe.tuners import all_pe_keys
from mmf_pe.utils.io import atomic_write_text


def missing_pe_keys(yaml_path, model_name):
    with open(yaml_path) as f:
        data = yaml.safe_load(f)
    pe = data["model_config"][model_name].get("pe") or {}
    return data, [key for key in all_pe_keys() if key not in pe]


def yaml_with_all_pe_keys(yaml_path, model_name):
    """`yaml_path` itself, or a copy (in the temp dir, named by its content) with the missing `pe:` keys as null."""
    data, missing = missing_pe_keys(yaml_path, model_name)
    if not missing:
        return yaml_path
    node = data["model_config"][model_name]
    node["pe"] = {**(node.get("pe") or {}), **dict.fromkeys(missing)}
    text = f"# {yaml_path} + the pe keys of methods registered elsewhere: {', '.join(missing)}\n"
    text += yaml.safe_dump(data, sort_keys=False)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = os.path.join(tempfile.gettempdir(), f"mmf_pe-{os.getuid()}", f"{model_name}-{digest}.yaml")
    if not os.path.isfile(path):
        atomic_write_text(path, text)
    return path
