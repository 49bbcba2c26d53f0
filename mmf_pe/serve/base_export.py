"""`mmf_pe export-base`: the `base/` folder a server needs, from an MMF run (its frozen weights + tokenizer).

    mmf_pe export-base <run dir | checkpoint> <served folder> [--tokenizer DIR] [--max-seq-length N]

The adapters exported from the same run (`mmf_pe export-adapter <run> <served folder>/<name>`) then match its
base-weight fingerprint. The tokenizer and max_seq_length default to the run config's text processor.
"""
import argparse
import os

from mmf_pe.serve.layout import save_base


def _text_processor_params(config):
    for dataset in (config.get("dataset_config") or {}).values():
        processor = ((dataset or {}).get("processors") or {}).get("text_processor") or {}
        if processor.get("params"):
            return processor["params"]
    return {}


def export_base(source, folder, tokenizer_dir=None, max_seq_length=None, which="best", default_adapter=None):
    from mmf_pe.experiments.export import build_from_run_config, find_checkpoint, read_checkpoint

    path = find_checkpoint(source, which)
    state, config = read_checkpoint(path)
    model = build_from_run_config(config)
    model.load_state_dict(state, strict=True)
    params = _text_processor_params(config)
    tokenizer_dir = tokenizer_dir or ((params.get("tokenizer_config") or {}).get("type"))
    if not tokenizer_dir or not os.path.isfile(os.path.join(str(tokenizer_dir), "vocab.txt")):
        raise FileNotFoundError(f"{path}: no local tokenizer directory (vocab.txt) in the run config "
                                f"({tokenizer_dir!r}); pass --tokenizer DIR")
    max_seq_length = max_seq_length or int(params.get("max_seq_length", 128))
    return save_base(model, folder, str(tokenizer_dir), max_seq_length=max_seq_length,
                     default_adapter=default_adapter)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="mmf_pe export-base", description=__doc__.split("\n")[0])
    parser.add_argument("source", help="run directory (env.save_dir) or checkpoint file")
    parser.add_argument("folder", help="the served folder (base/ is written inside)")
    parser.add_argument("--tokenizer", default=None, help="local BERT tokenizer directory (default: the run's)")
    parser.add_argument("--max-seq-length", type=int, default=None)
    parser.add_argument("--which", choices=["best", "current", "final"], default="best")
    parser.add_argument("--default-adapter", default=None, help="adapter a request without adapter= gets")
    args = parser.parse_args(argv)
    out = export_base(args.source, args.folder, args.tokenizer, args.max_seq_length, args.which, args.default_adapter)
    print(f"{args.source} -> {out}")
    return 0
