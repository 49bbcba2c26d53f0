"""Table I: total / trained / adapter parameters of visual_bert_pe per training mode (random weights, no data).

    mmf_pe table1 [--modes fc full pe] [--set key=value ...]
"""
import argparse

PAPER_TABLE_I = {"fc": (112_044_290, 593_666), "full": (112_044_290, 112_044_290), "pe": (113_455_250, 2_004_626)}


def build_model(mode, overrides=(), model="visual_bert_pe"):
    """The family's default model for one training mode (random weights; mmf_pe.models.contract)."""
    from mmf_pe.models.contract import get_family

    return get_family(model).build_default(mode, overrides)


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
    parser.add_argument("--set", nargs="*", default=[],
                        help="model config overrides, e.g. pe.paper.reduction_factor=16")
    args = parser.parse_args(argv)
    rows = []
    for mode in args.modes:
        row = count(mode, args.set)
        print(f"{mode}: Total Parameters: {row['total']}. Trained Parameters: {row['trained']}")
        rows.append(row)
    print(format_table(rows))
    return 0
