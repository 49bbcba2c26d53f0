"""`mmf_pe convert-mmh`: the Kaggle MMHS150K upload -> MMF's layout for the `mmh` dataset.

    mmf_pe convert-mmh --src <unzipped MMHS150K dir> [--data-dir $MMF_DATA_DIR] [--label-rule two_of_three]

writes `<data dir>/datasets/mmh/defaults/`:
    annotations/{train,val,test}.jsonl   one tweet a line, in the official split files' order
    images/<id>.jpg                      symbolic links to img_resized/ (or copies with --copy-images)
    skipped.jsonl                        every split-file line that was not converted, with the reason
    conversion.json                      options, counts and positive rates
A line of annotations: {"id": "1114679353714016256" (a string: 19 digits), "img": "<id>.jpg", "text": tweet text +
" | " + OCR text, "label": 0/1 under the rule (null where `majority` has no answer), "label_rule", "labels": the three
annotator labels, "majority_class": 0..5 or null, "tweet_text", "ocr_text", "timestamp_ms": the posting time from the
snowflake id (ms since the Unix epoch), "created_at": the same in UTC ISO-8601}.
An id that is not a snowflake (no posting time in it) is skipped and listed by split file and line, like every other
bad line; the summary gives each split's time range (`projects/visual_bert_pe/mmh_time_*.yaml` split by it).

Nothing is dropped silently: an id missing from MMHS150K_GT.json, a GT entry without `tweet_text`, bad labels, a
missing or undecodable image or a malformed OCR file skips that tweet and is listed in skipped.jsonl and the summary.
A missing OCR file is normal (no text in the image). Re-running gives the same files (all writes atomic; existing image
links are reused).
"""
import argparse
import json
import os
import shutil
import sys
from collections import Counter, OrderedDict
from concurrent.futures import ThreadPoolExecutor

from mmf_pe.data.timeline import iso
from mmf_pe.datasets.mmh import labels as label_rules
from mmf_pe.datasets.mmh import text as tweet_text
from mmf_pe.datasets.mmh.snowflake import SnowflakeError, snowflake_ms
from mmf_pe.utils.io import atomic_write_text

SPLITS = ("train", "val", "test")
GT_FILE = "MMHS150K_GT.json"
MAX_ID = 2**63 - 1  # ids travel as int64 tensors through MMF's batches; tweet ids (snowflakes) are below this
PAPER_VAL_POSITIVE = 0.74


class ConversionError(RuntimeError):
    pass


def default_data_dir():
    """MMF's data directory exactly as rc10 resolves `env.data_dir`: $MMF_DATA_DIR, else <MMF cache dir>/data."""
    from mmf.utils.configuration import resolve_dir

    return resolve_dir("MMF_DATA_DIR", "data")


def find_source(src):
    """The folder holding MMHS150K_GT.json: `src` itself or its MMHS150K/ subfolder (the zip nests one)."""
    for candidate in (src, os.path.join(src, "MMHS150K")):
        if os.path.isfile(os.path.join(candidate, GT_FILE)):
            return candidate
    raise ConversionError(
        f"{os.path.join(src, GT_FILE)} not found. --src must be the unzipped MMHS150K folder (it holds {GT_FILE}, "
        "img_resized/, img_txt/ and splits/); get it from https://gombru.github.io/2019/10/09/MMHS/ or Kaggle's "
        "'MMHS150K' upload."
    )


def load_gt(path):
    try:
        with open(path, encoding="utf-8") as f:
            gt = json.load(f)
    except json.JSONDecodeError as exc:
        raise ConversionError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg})") from None
    if not isinstance(gt, dict):
        raise ConversionError(f"{path}: expected one JSON object keyed by tweet id, got {type(gt).__name__}")
    return gt


def read_split(path):
    """(line number, stripped text) for every non-empty line of a split file."""
    if not os.path.isfile(path):
        raise ConversionError(f"split file {path} not found (MMHS150K ships splits/train_ids.txt, val_ids.txt, "
                              "test_ids.txt)")
    with open(path, encoding="utf-8") as f:
        return [(number, line.strip()) for number, line in enumerate(f, start=1) if line.strip()]


def check_image(path):
    """None when `path` decodes as an image, else the reason. JPEGs decode at 1/8 scale (fast, still reads all data)."""
    from PIL import Image

    try:
        if os.path.getsize(path) == 0:
            return "empty image file (0 bytes)"
        with Image.open(path) as image:
            width, height = image.size
            if width < 1 or height < 1:
                return f"invalid image size {width}x{height}"
            if image.format == "JPEG":
                image.draft(image.mode, (max(1, width // 8), max(1, height // 8)))
            image.load()
    except Image.UnidentifiedImageError:
        return "not an image PIL can identify"
    except Exception as exc:  # PIL raises many kinds for corrupt data (OSError, SyntaxError, ValueError, ...)
        return f"corrupt or truncated image ({str(exc) or type(exc).__name__})"
    return None


def read_ocr(path):
    """The image's OCR text ('' when the file does not exist: OCR found no text); ValueError if malformed."""
    if not os.path.isfile(path):
        return ""
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed OCR file {path} ({exc})") from None
    if not isinstance(value, dict) or not isinstance(value.get("img_text", ""), str):
        raise ValueError(f"malformed OCR file {path} (expected {{\"img_text\": \"...\"}})")
    return value.get("img_text", "")


class Converter:
    def __init__(self, src, out, label_rule=label_rules.DEFAULT_RULE, urls="drop", mentions="user", use_ocr=True,
                 copy_images=False, verify_images=True, workers=8, log=print):
        if label_rule not in label_rules.RULES:
            raise ConversionError(f"unknown label rule {label_rule!r}; choose one of {', '.join(label_rules.RULES)}")
        self.src = find_source(src)
        self.out = out
        self.label_rule, self.urls, self.mentions, self.use_ocr = label_rule, urls, mentions, use_ocr
        self.copy_images, self.verify_images, self.workers, self.log = copy_images, verify_images, workers, log
        self.skipped = []

    def skip(self, split, where, tweet_id, reason):
        self.skipped.append(OrderedDict(split=split, where=where, id=tweet_id, reason=reason))

    def run(self):
        gt_path = os.path.join(self.src, GT_FILE)
        self.log(f"[convert-mmh] reading {gt_path}")
        gt = load_gt(gt_path)
        records = {split: self._split_records(split, gt, gt_path) for split in SPLITS}
        self._check_images(records)
        self._warn_overlaps(records)
        for split in SPLITS:
            atomic_write_text(os.path.join(self.out, "annotations", f"{split}.jsonl"),
                              "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records[split]))
        self._link_images([r for split in SPLITS for r in records[split]])
        summary = self._summary(records)
        atomic_write_text(os.path.join(self.out, "skipped.jsonl"),
                          "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in self.skipped))
        atomic_write_text(os.path.join(self.out, "conversion.json"), json.dumps(summary, indent=2) + "\n")
        self.log(format_summary(summary, self.skipped, self.out))
        return summary

    def _split_records(self, split, gt, gt_path):
        path = os.path.join(self.src, "splits", f"{split}_ids.txt")
        records, seen = [], set()
        for number, raw in read_split(path):
            where = f"{path}:{number}"
            if not raw.isdigit():
                self.skip(split, where, raw, f"not a tweet id: {raw[:40]!r}")
            elif int(raw) > MAX_ID:
                self.skip(split, where, raw, "id does not fit in a 64-bit integer")
            elif isinstance(timestamp := _snowflake_or_reason(raw), str):
                self.skip(split, where, raw, timestamp)
            elif raw in seen:
                self.skip(split, where, raw, f"duplicate id in {os.path.basename(path)}")
            elif raw not in gt:
                self.skip(split, where, raw, f"id not in {gt_path}")
            else:
                seen.add(raw)
                try:
                    records.append(self._record(raw, gt[raw], gt_path, timestamp))
                except ValueError as exc:
                    self.skip(split, where, raw, str(exc))
        return records

    def _record(self, tweet_id, entry, gt_path, timestamp_ms):
        if not isinstance(entry, dict):
            raise ValueError(f"GT entry is {type(entry).__name__}, not an object (in {gt_path})")
        try:
            annotator_labels = label_rules.validate(entry.get("labels"))
        except label_rules.LabelError as exc:
            raise ValueError(f"{exc} (in {gt_path})") from None
        if "tweet_text" not in entry:  # skipped and counted, not kept as an empty-text sample
            raise ValueError(f"GT entry has no tweet_text (in {gt_path})")
        raw_text = entry["tweet_text"]
        if not isinstance(raw_text, str):
            raise ValueError(f"tweet_text is {type(raw_text).__name__}, not a string (in {gt_path})")
        image = os.path.join(self.src, "img_resized", f"{tweet_id}.jpg")
        if not os.path.isfile(image):
            raise ValueError(f"image {image} does not exist")
        ocr = read_ocr(os.path.join(self.src, "img_txt", f"{tweet_id}.json")) if self.use_ocr else ""
        clean_tweet = tweet_text.clean(raw_text, self.urls, self.mentions)
        clean_ocr = tweet_text.clean(ocr, self.urls, self.mentions)
        return OrderedDict(
            id=tweet_id,
            img=os.path.basename(image),
            text=tweet_text.join(clean_tweet, clean_ocr),
            label=label_rules.binary_label(annotator_labels, self.label_rule),
            label_rule=self.label_rule,
            labels=annotator_labels,
            majority_class=label_rules.majority_class(annotator_labels),
            tweet_text=clean_tweet,
            ocr_text=clean_ocr,
            timestamp_ms=timestamp_ms,
            created_at=iso(timestamp_ms),
        )

    def _check_images(self, records):
        if not self.verify_images:
            return
        from tqdm import tqdm

        todo = [(split, r) for split in SPLITS for r in records[split]]
        paths = [os.path.join(self.src, "img_resized", r["img"]) for _, r in todo]
        with ThreadPoolExecutor(max_workers=max(1, self.workers)) as pool:
            reasons = list(tqdm(pool.map(check_image, paths), total=len(paths), desc="[convert-mmh] checking images",
                                unit="img", mininterval=2.0, disable=len(paths) < 1000))
        bad = {id(r): (split, reason, path) for (split, r), reason, path in zip(todo, reasons, paths) if reason}
        for split in SPLITS:
            kept = []
            for r in records[split]:
                if id(r) in bad:
                    _, reason, path = bad[id(r)]
                    self.skip(split, path, r["id"], reason)
                else:
                    kept.append(r)
            records[split] = kept

    def _warn_overlaps(self, records):
        owners = {}
        for split in SPLITS:
            for r in records[split]:
                owners.setdefault(r["id"], []).append(split)
        shared = {k: v for k, v in owners.items() if len(v) > 1}
        if shared:
            example = next(iter(shared.items()))
            self.log(f"[convert-mmh] WARNING: {len(shared)} ids are in more than one split (kept in each), e.g. "
                     f"{example[0]} in {', '.join(example[1])}")

    def _link_images(self, records):
        directory = os.path.join(self.out, "images")
        os.makedirs(directory, exist_ok=True)
        for r in records:
            source = os.path.realpath(os.path.join(self.src, "img_resized", r["img"]))
            target = os.path.join(directory, r["img"])
            if self.copy_images:
                if not (os.path.isfile(target) and not os.path.islink(target)
                        and os.path.getsize(target) == os.path.getsize(source)):
                    tmp = target + ".tmp"
                    shutil.copyfile(source, tmp)
                    os.replace(tmp, target)
            elif not (os.path.islink(target) and os.readlink(target) == source):
                tmp = target + ".tmp"
                if os.path.lexists(tmp):
                    os.unlink(tmp)
                os.symlink(source, tmp)
                os.replace(tmp, target)

    def _summary(self, records):
        splits = OrderedDict()
        for split in SPLITS:
            rates = label_rules.summarize([r["labels"] for r in records[split]])
            splits[split] = OrderedDict(
                tweets=len(records[split]),
                with_ocr=sum(1 for r in records[split] if r["ocr_text"]),
                skipped=sum(1 for s in self.skipped if s["split"] == split),
                positives={rule: {"positive": p, "answered": n} for rule, (p, n) in rates.items()},
            )
            times = [r["timestamp_ms"] for r in records[split]]
            if times:
                splits[split]["first_posted"], splits[split]["last_posted"] = iso(min(times)), iso(max(times))
        return OrderedDict(
            source=os.path.abspath(self.src),
            label_rule=self.label_rule,
            options=OrderedDict(urls=self.urls, mentions=self.mentions, ocr=self.use_ocr,
                                ocr_separator=tweet_text.OCR_SEPARATOR, copy_images=self.copy_images,
                                verify_images=self.verify_images),
            splits=splits,
            skip_reasons=dict(Counter(_reason_kind(s["reason"]) for s in self.skipped)),
        )


def _snowflake_or_reason(raw):
    """The id's posting time (ms), or the reason it is not a snowflake id (a str)."""
    try:
        return snowflake_ms(raw)
    except SnowflakeError as error:
        return f"not a snowflake tweet id, no posting time: {error}"


def _reason_kind(reason):
    """A skip reason without the id/path specifics, for counting."""
    for kind in ("not a tweet id", "64-bit", "not a snowflake", "duplicate id", "id not in", "annotator label",
                 "expected 3 annotator", "does not exist", "malformed OCR", "empty image", "not an image",
                 "corrupt or truncated", "invalid image size", "tweet_text", "GT entry"):
        if kind in reason:
            return kind
    return reason


def format_summary(summary, skipped, out):
    """The table printed after conversion: every split's size and positive rate under each rule."""
    rule = summary["label_rule"]
    header = f"{'split':<6} {'tweets':>7} {'OCR':>7} {'skipped':>7}" + "".join(
        f" {name + ('*' if name == rule else ''):>14}" for name in label_rules.RULES)
    lines = [f"[convert-mmh] wrote {out}", "positive rate by label rule (* = the rule used for `label`):", header]
    for split, s in summary["splits"].items():
        cells = "".join(f" {label_rules.rate(v['positive'], v['answered']):>14}" for v in s["positives"].values())
        lines.append(f"{split:<6} {s['tweets']:>7} {s['with_ocr']:>7} {s['skipped']:>7}{cells}")
    lines.append("posting times (from the snowflake ids): " + "; ".join(
        f"{split} {s['first_posted']} .. {s['last_posted']}" for split, s in summary["splits"].items()
        if "first_posted" in s))
    lines.append("note: on the full MMHS150K, val/test are about balanced under two_of_three (the dataset authors' "
                 f"rule); the paper's MMH validation set was ~{PAPER_VAL_POSITIVE:.0%} positive, so it used another "
                 "rule (compare the `any` column). Results are comparable only under the same rule.")
    no_answer = {split: s["tweets"] - s["positives"]["majority"]["answered"] for split, s in summary["splits"].items()}
    if any(no_answer.values()):
        lines.append("majority has no answer (all three annotators differ) for "
                     + ", ".join(f"{n} {split}" for split, n in no_answer.items())
                     + " tweets; under --label-rule majority they get label null and the dataset leaves them out.")
    if skipped:
        lines.append(f"skipped {len(skipped)} split-file lines (all listed in {os.path.join(out, 'skipped.jsonl')}):")
        for kind, count in sorted(summary["skip_reasons"].items(), key=lambda kv: -kv[1]):
            example = next(s for s in skipped if _reason_kind(s["reason"]) == kind)
            lines.append(f"  {count:>6} x {kind}: e.g. id {example['id']} ({example['where']}): {example['reason']}")
    else:
        lines.append("skipped nothing.")
    return "\n".join(lines)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="mmf_pe convert-mmh", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", required=True, help="the unzipped MMHS150K folder (holds MMHS150K_GT.json)")
    parser.add_argument("--data-dir", default=None, help="MMF's data dir (default: $MMF_DATA_DIR, else MMF's default)")
    parser.add_argument("--out", default=None, help="output folder (default: <data dir>/datasets/mmh/defaults)")
    parser.add_argument("--label-rule", default=label_rules.DEFAULT_RULE, choices=label_rules.RULES,
                        help="binary label from the 3 annotators (default: two_of_three, the dataset authors' rule)")
    parser.add_argument("--urls", default="drop", choices=tweet_text.URL_CHOICES, help="URLs in text (default: drop)")
    parser.add_argument("--mentions", default="user", choices=tweet_text.MENTION_CHOICES,
                        help="@mentions in text (default: user, i.e. replaced by '@user')")
    parser.add_argument("--no-ocr", action="store_true", help="leave the images' OCR text out of `text`")
    parser.add_argument("--copy-images", action="store_true", help="copy images instead of symbolic links")
    parser.add_argument("--no-verify-images", action="store_true",
                        help="only check that images exist (default: decode each one, skip those that fail)")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="threads for image checks")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when anything was skipped")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    out = args.out or os.path.join(args.data_dir or default_data_dir(), "datasets", "mmh", "defaults")
    try:
        converter = Converter(args.src, out, label_rule=args.label_rule, urls=args.urls, mentions=args.mentions,
                              use_ocr=not args.no_ocr, copy_images=args.copy_images,
                              verify_images=not args.no_verify_images, workers=args.workers)
        converter.run()
    except ConversionError as exc:
        print(f"mmf_pe convert-mmh: error: {exc}", file=sys.stderr)
        return 2
    return 1 if args.strict and converter.skipped else 0


if __name__ == "__main__":
    sys.exit(main())
