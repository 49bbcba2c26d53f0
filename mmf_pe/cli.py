"""`mmf_pe` command: launcher for MMF runs (works even where .pth files are skipped) and the plugin's tools.

    mmf_pe run  config=... model=... dataset=...      same as mmf_run
    mmf_pe predict config=... ...                     same as mmf_predict
    mmf_pe <tool> --help                              tools below
"""
import importlib
import sys

# subcommand -> (module, function, one-line help). Tool modules are imported only when used.
TOOLS = {
    "run": ("mmf_pe.cli", "_mmf_run", "train/evaluate with MMF (mmf_run)"),
    "predict": ("mmf_pe.cli", "_mmf_predict", "write predictions with MMF (mmf_predict)"),
    "train": ("mmf_pe.launch.cli", "main", "multi-GPU / multi-node / CPU-process training (scripts/train.sh)"),
    "table1": ("mmf_pe.tools.table1", "main", "print Table I parameter counts at bert-base size"),
    "demo": ("mmf_pe.demo.main", "main", "the main job: synthetic memes, FC/Full/PE, report"),
    "extract": ("mmf_pe.extraction.cli", "main", "extract Faster R-CNN region features into MMF's LMDB format"),
    "ocr": ("mmf_pe.ocr.batch", "main", "read memes' text from their images (Tesseract) beside the given text"),
    "extract-merge": ("mmf_pe.extraction.cli", "merge_main", "join `extract --shard i/n` LMDBs into one"),
    "download": ("mmf_pe.datasets.zoo", "main", "fetch COCO VisualBERT / HM features / BERT (verified, resumable)"),
    "convert-hm": ("mmf_pe.datasets.hateful_memes.convert", "main", "Hateful Memes zip/folder -> MMF's layout"),
    "convert-mmh": ("mmf_pe.datasets.mmh.convert", "main", "convert MMHS150K into MMF's layout"),
    "report": ("mmf_pe.reporting.cli", "main", "Table I/II and plots from run directories"),
    "evaluate": ("mmf_pe.experiments.evaluate", "main", "a run's best checkpoint on the test splits"),
    "drift": ("mmf_pe.experiments.drift", "main", "AUROC / positive rate / count per time window of a split"),
    "adapt": ("mmf_pe.experiments.adapt", "main", "a new adapter version from an exported one, on a new period"),
    "robustness": ("mmf_pe.experiments.robustness", "main", "AUROC / attack success under evasion attacks and PGD"),
    "seeds": ("mmf_pe.experiments.seeds", "main", "train one config with several seeds"),
    "export-adapter": ("mmf_pe.experiments.export", "main", "write only the trained parameters (safetensors)"),
    "serve": ("mmf_pe.serve.cli", "main", "score memes over HTTP: one frozen base, many adapters"),
    "export-base": ("mmf_pe.serve.base_export", "main", "a run's frozen weights + tokenizer for `serve`"),
}


def _run_mmf(argv, predict):
    from mmf_pe.compat import install

    install()
    from mmf_cli.run import run

    if predict:
        argv = list(argv) + ["evaluation.predict=true"]
    sys.argv = [sys.argv[0]] + list(argv)
    run(predict=predict)


def _mmf_run(argv):
    _run_mmf(argv, predict=False)


def _mmf_predict(argv):
    _run_mmf(argv, predict=True)


def usage():
    lines = [__doc__.strip(), "", "commands:"]
    lines += [f"  {name:<16}{help_}" for name, (_, _, help_) in TOOLS.items()]
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in TOOLS:
        print(f"mmf_pe: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module_name, function, _ = TOOLS[name]
    result = getattr(importlib.import_module(module_name), function)(rest)
    return result or 0


if __name__ == "__main__":
    sys.exit(main())
