"""Annotations in time: the `timestamp_ms` field, a split by time, and consecutive time windows.

Any jsonl annotation file whose lines carry `timestamp_ms` (milliseconds since the Unix epoch, an integer; `mmf_pe
convert-mmh` writes it from each tweet's snowflake id) can be split by time and scored per time window. A missing or
malformed timestamp is an error naming the file and line, never a silently undated sample.
"""
import datetime
from collections import OrderedDict

TIMESTAMP_KEY = "timestamp_ms"
SPLIT_ORDER = ("train", "val", "test")


class TimelineError(ValueError):
    """Annotations without usable timestamps, or a time split that cannot be made (says where)."""


def iso(ms):
    """UTC ISO-8601 of a ms timestamp, to the second (as tables and logs show it)."""
    return datetime.datetime.fromtimestamp(int(ms) / 1000, tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def record_time(record, where):
    """The record's `timestamp_ms` as an int; TimelineError naming `where` (file:line) when missing or malformed."""
    if not isinstance(record, dict) or TIMESTAMP_KEY not in record:
        raise TimelineError(f"{where}: no {TIMESTAMP_KEY!r} field; time splits and drift need annotations with "
                            f"timestamps (for MMHS150K: re-run `mmf_pe convert-mmh`, which writes them)")
    value = record[TIMESTAMP_KEY]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TimelineError(f"{where}: {TIMESTAMP_KEY} {value!r} is not a non-negative integer (ms since the epoch)")
    return value


def read_timed_jsonl(paths):
    """[(timestamp_ms, record, "file:line")] of every non-empty line of the jsonl files, in file order."""
    from mmf_pe.utils.io import jsonl_records

    return [(record_time(record, where), record, where)
            for path in ([paths] if isinstance(paths, str) else paths)
            for record, where in jsonl_records(path, TimelineError)]


def _order_key(row):
    timestamp, record = row[0], row[1]
    tweet_id = str(record.get("id", ""))
    return (timestamp, int(tweet_id) if tweet_id.isdigit() else 0, tweet_id)


def split_by_time(rows, fractions):
    """Split rows (timestamp first) in time order: the earliest fractions["train"], the next ["val"], the rest test.

    Returns (OrderedDict split -> rows, summary dict with counts, first/last times and the two boundaries). Ties are
    broken by id, so the split is the same on every run and no train row is later than any test row. A record whose
    id came earlier in the pool (an id in two of the pooled files) is dropped, so it cannot land in two splits."""
    unknown = set(fractions) - set(SPLIT_ORDER)
    if unknown:
        raise TimelineError(f"time_split fractions name unknown splits {sorted(unknown)}; use train, val, test")
    values = [float(fractions.get(name, 0.0)) for name in SPLIT_ORDER]
    if any(v < 0 for v in values) or abs(sum(values) - 1.0) > 1e-6:
        raise TimelineError(f"time_split fractions {dict(zip(SPLIT_ORDER, values))} must be >= 0 and sum to 1")
    seen, unique = set(), []
    for row in rows:
        key = str(row[1].get("id", "")) if isinstance(row[1], dict) else None
        if key is None or key not in seen:
            seen.add(key)
            unique.append(row)
    ordered = sorted(unique, key=_order_key)
    total = len(ordered)
    n_train = int(round(values[0] * total))
    n_val = int(round((values[0] + values[1]) * total)) - n_train
    parts = OrderedDict([("train", ordered[:n_train]), ("val", ordered[n_train:n_train + n_val]),
                         ("test", ordered[n_train + n_val:])])
    summary = OrderedDict(total=total, duplicates_dropped=len(rows) - total, fractions=dict(zip(SPLIT_ORDER, values)),
                          splits=OrderedDict())
    for name, part in parts.items():
        entry = OrderedDict(count=len(part))
        if part:
            entry.update(first_ms=part[0][0], last_ms=part[-1][0], first=iso(part[0][0]), last=iso(part[-1][0]))
        summary["splits"][name] = entry
    summary["boundaries"] = OrderedDict(
        (f"{a}/{b}", parts[b][0][0]) for a, b in (("train", "val"), ("val", "test")) if parts[b])
    return parts, summary


def describe_split(summary):
    """One line per split: count and time range (printed by the dataset, so the run's log has the boundaries)."""
    lines = [f"time split of {summary['total']} samples (earliest {summary['fractions']['train']:.0%} train, next "
             f"{summary['fractions']['val']:.0%} val, latest {summary['fractions']['test']:.0%} test):"]
    for name, entry in summary["splits"].items():
        span = f"{entry['first']} .. {entry['last']}" if entry["count"] else "empty"
        lines.append(f"  {name:<5} {entry['count']:>7}  {span}")
    if summary.get("duplicates_dropped"):
        lines.append(f"  ({summary['duplicates_dropped']} records left out: their id came earlier in the pool)")
    return "\n".join(lines)


def time_windows(timestamps, count):
    """Indices of `timestamps` cut into `count` consecutive windows of (nearly) equal sample counts, in time order.

    Equal counts rather than equal durations: every window gets enough samples for an AUROC even when posting
    volume varies (each window's time range is reported beside it)."""
    if count < 1:
        raise TimelineError(f"--windows must be >= 1, got {count}")
    order = sorted(range(len(timestamps)), key=lambda i: (timestamps[i], i))
    if count > len(order):
        raise TimelineError(f"{count} windows but only {len(order)} samples")
    bounds = [round(k * len(order) / count) for k in range(count + 1)]
    return [order[bounds[k]:bounds[k + 1]] for k in range(count)]
