"""`mmf_pe report RUN_DIR... [--out DIR]`: Table I/II and plots from run directories (local files only)."""
import argparse

from mmf_pe.reporting.report import build_report


def main(argv=None):
    parser = argparse.ArgumentParser(prog="mmf_pe report", description=__doc__.split(":", 1)[1].strip())
    parser.add_argument("runs", nargs="+", help="run save dirs (or folders holding them, searched recursively)")
    parser.add_argument("--out", default="report", help="output folder (default: ./report)")
    parser.add_argument("--title", default="mmf-pe report")
    args = parser.parse_args(argv)
    paths = build_report(args.runs, args.out, title=args.title)
    print(f"{paths['runs']} run(s) -> {paths['markdown']}")
    for path in paths["plots"]:
        print(f"  plot: {path}")
    return 0
