"""Word error rate of `mmf_pe ocr` on the demo's memes (`mmf_pe/demo/memes.py` draws each caption into its image).

    python scripts/benchmark_ocr.py [--memes 256] [--sizes 128 256] [--split test_seen]

Makes the demo's memes (same seed and drawing code as `make demo`; 128 px is the demo's size) in a scratch folder, runs
the batch OCR of `mmf_pe ocr` on one split's annotations and prints a table: WER and CER of the OCR'd text against
the given captions (lower-cased, punctuation dropped), share of captions read exactly, seconds per image.
"""
import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    import editdistance

    from mmf_pe.demo.memes import SPLITS, make_memes
    from mmf_pe.ocr import OcrEngine
    from mmf_pe.ocr.batch import ocr_annotations
    from mmf_pe.ocr.quality import word_error_rate, words

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--memes", type=int, default=SPLITS["test_seen"], help="memes of the split (multiple of 4)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256], help="image sizes in px (demo: 128)")
    parser.add_argument("--split", default="test_seen")
    args = parser.parse_args(argv)
    engine = OcrEngine()
    print(f"engine: {engine.version()}; split {args.split}, {args.memes} memes per size\n")
    print("| image px | memes | WER | CER | captions read exactly | s / image |")
    print("|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as scratch:
            paths = make_memes(scratch, splits={args.split: args.memes}, image_size=size, progress=False)
            out = os.path.join(scratch, "ocr.jsonl")
            started = time.perf_counter()
            ocr_annotations(os.path.join(paths["annotations"], f"{args.split}.jsonl"), out, engine=engine,
                            progress=False)
            seconds = (time.perf_counter() - started) / args.memes
            rows = [json.loads(line) for line in open(out)]
        pairs = [(r["ocr_text"], r["text"]) for r in rows]
        wer, _ = word_error_rate(pairs)
        chars = [(" ".join(words(h)), " ".join(words(t))) for h, t in pairs]
        cer = sum(editdistance.eval(h, t) for h, t in chars) / sum(len(t) for _, t in chars)
        exact = sum(h == t for h, t in chars) / len(chars)
        print(f"| {size} | {len(rows)} | {wer:.3f} | {cer:.3f} | {exact:.1%} | {seconds:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
