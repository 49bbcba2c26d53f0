"""`mmf_pe export-base`: a base folder a server needs, from an MMF run (its frozen weights + processors).

    mmf_pe export-base <run dir | checkpoint> <served folder> [--name NAME] [--tokenizer DIR] [--max-seq-length N]

Writes `<served folder>/base/`, or `<served folder>/bases/<NAME>/` with `--name` (a folder may serve several bases,
e.g. a VisualBERT one and a CLIP one). What a base holds is its model family's (mmf_pe.models.contract): VisualBERT's
weights and tokenizer, the frozen CLIP / BLIP encoder directory, ... The adapters exported from the same run
(`mmf_pe export-adapter <run> <served folder>/<name>`) then match its base-weight fingerprints.
"""
import argparse
import os

from mmf_pe.serve.layout import BASE_DIR, check_name

BASES_DIR = "bases"


def base_dir(folder, name=None):
    return os.path.join(folder, BASE_DIR) if not name else os.path.join(folder, BASES_DIR, check_name(name))


def export_base(source, folder, tokenizer_dir=None, max_seq_length=None, which="best", default_adapter=None,
                name=None):
    from mmf_pe.experiments.export import load_run_model

    model, config, family, _ = load_run_model(source, which)
    return family.export_base(model, config, base_dir(folder, name), default_adapter, tokenizer_dir=tokenizer_dir,
                              max_seq_length=max_seq_length)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="mmf_pe export-base", description=__doc__.split("\n")[0])
    parser.add_argument("source", help="run directory (env.save_dir) or checkpoint file")
    parser.add_argument("folder", help="the served folder (base/ or bases/<name>/ is written inside)")
    parser.add_argument("--name", default=None, help="write bases/<name>/ (another base beside base/)")
    parser.add_argument("--tokenizer", default=None, help="local tokenizer directory (default: the run's)")
    parser.add_argument("--max-seq-length", type=int, default=None)
    parser.add_argument("--which", choices=["best", "current", "final"], default="best")
    parser.add_argument("--default-adapter", default=None, help="adapter a request without adapter= gets")
    args = parser.parse_args(argv)
    out = export_base(args.source, args.folder, args.tokenizer, args.max_seq_length, args.which, args.default_adapter,
                      args.name)
    print(f"{args.source} -> {out}")
    return 0
