"""Table I: total / trained / adapter parameters of visual_bert_pe per training mode (random weights, no data).

    mmf_pe table1 [--modes fc full pe] [--set key=value ...]
"""
import argparse
import os

import yaml
from omegaconf import OmegaConf

from mmf_pe import PACKAGE_DIR

PAPER_TABLE_I = {"fc": (112_044_290, 593_666), "full": (112_044_290, 112_044_290), "pe": (113_455_250, 2_004_626)}


def model_config(mode, overrides=()):
    """visual_bert_pe's default config (bert-base dimensions, random init) for one training mode."""
    base = OmegaConf.load(os.path.join(PACKAGE_DIR, "configs", "models", "visual_bert_pe.yaml"))
    config = base.model_config.visual_bert_pe
    config.training_mode = mode
    if mode == "pe" and not config.pe.method:
        config.pe.method = "paper"
    for item in overrides:
        key, value = item.split("=", 1)
        OmegaConf.update(config, key, yaml.safe_load(value) if value else None, merge=True)
    return config


def build_model(mode, overrides=()):
    from mmf_pe.compat import install

    install()
    import mmf.utils.env  # noqa: F401  (registers everything)

    from mmf_pe.models.visual_bert_pe import VisualBERTPE

    model = VisualBERTPE(model_config(mode, overrides))
    model.build()
    return model


def count(mode, overrides=()):
    from mmf.utils.general import print_model_parameters

    model = build_model(mode, overrides)
    total, trained = print_model_parameters(model, return_only=True)
    return {"mode": mode, "total": total, "trained": trained, "adapter": model.parameter_counts()["adapter"]}


def format_table(rows):
    lines = ["| mode | total | trained | adapter | trained % | paper (total / trained) |", "|---|---|---|---|---|---|"]
    for row in rows:
        paper = PAPER_TABLE_I.get(row["mode"])
        paper_text = f"{paper[0]:,} / {paper[1]:,}" if paper else "-"
        lines.append(
            f"| {row['mode']} | {row['total']:,} | {row['trained']:,} | {row['adapter']:,} | "
            f"{100 * row['trained'] / row['total']:.2f} | {paper_text} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="mmf_pe table1", description=__doc__.split("\n")[0])
    parser.add_argument("--modes", nargs="+", default=["fc", "full", "pe"])
    parser.add_argument("--set", nargs="*", default=[], help="model config overrides, e.g. pe.reduction_factor=16")
    args = parser.parse_args(argv)
    rows = []
    for mode in args.modes:
        row = count(mode, args.set)
        print(f"{mode}: Total Parameters: {row['total']}. Trained Parameters: {row['trained']}")
        rows.append(row)
    print(format_table(rows))
    return 0
