"""Epoch time of clip_pe with and without the embedding cache: the CLIP row of benchmark_encoder_cache.py, kept
under its old name and options (`--clip-dir` = `--encoder-dir`).

    .venv/bin/python scripts/benchmark_clip_cache.py                       # generated memes + random CLIP (CPU-sized)
    .venv/bin/python scripts/benchmark_clip_cache.py --clip-dir $MMF_PE_WEIGHTS_DIR/clip-vit-large-patch14 \
        --data-dir $MMF_DATA_DIR --image-size 224 --limit 1024 --device cuda
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchmark_encoder_cache import main as benchmark  # noqa: E402


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    argv = ["--encoder-dir" if a == "--clip-dir" else a.replace("--clip-dir=", "--encoder-dir=") for a in argv]
    return benchmark(["--encoders", "clip", *argv])


if __name__ == "__main__":
    sys.exit(main())
