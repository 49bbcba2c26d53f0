"""The demo's runs, shared by the pipeline (which trains them) and the report (which labels them), and the settings
stamp each run directory carries (`demo_settings.json`: reuse key, timings, compute)."""
import json
import os

# run name -> (project config, label in the report)
RUNS = {
    "fc": ("demo_fc.yaml", "fc"),
    "full": ("demo_full.yaml", "full"),
    "pe": ("demo_pe.yaml", "pe/paper"),
    "text_only": ("demo_text.yaml", "text-only (full, no image)"),
}


def read_stamp(save_dir):
    """A run directory's demo stamp ({} before the run started)."""
    path = os.path.join(save_dir, "demo_settings.json")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)
