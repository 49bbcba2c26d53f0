"""JSON from clients, read with limits: nesting depth and integer length are bounded, and a refusal names where.

Python's parser turns 100,000 nested brackets into a RecursionError and a 5,000-digit integer into a ValueError (its
int-conversion limit), neither a JSONDecodeError; a 400-digit integer parses but overflows float32 later. Here each
is a `JSONLimitError` whose `path` names the key (`features`, `pe.rank`, ...) where the problem sits.
"""
import json
import math
import re

MAX_DEPTH = 64
MAX_INT_DIGITS = 40  # anything longer is no count, size or feature value this server takes
_OPENERS = re.compile(rb"(?:[\[{]\s*){%d}" % MAX_DEPTH)
_KEY = re.compile(rb'"((?:[^"\\]|\\.){1,200})"\s*:\s*$')


class JSONLimitError(ValueError):
    def __init__(self, message, path=None):
        super().__init__(message)
        self.message, self.path = message, path


class _LongInt(str):
    """An integer literal too long to convert (kept as its digits until the walk names where it sits)."""


def loads(data, finite=False, walk=True):
    """`json.loads` with the limits above; `finite`: NaN / Infinity literals are refused too (configs). `walk=False`
    skips the depth walk unless an over-long integer was seen (a 2M-number feature array is not walked in Python;
    what reads it refuses more than 2 dimensions anyway)."""
    long_ints = []

    def parse_int(digits):
        if len(digits.lstrip("-")) <= MAX_INT_DIGITS:
            return int(digits)
        long_ints.append(digits)
        return _LongInt(digits)

    try:
        value = json.loads(data, parse_int=parse_int)
    except RecursionError:
        raise JSONLimitError(f"nested deeper than {MAX_DEPTH} levels", _deep_key(data)) from None
    if walk or long_ints:
        check(value, finite)
    return value


def check(value, finite=False):
    """Walk `value` without recursion; raise JSONLimitError naming the first path over a limit."""
    stack = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise JSONLimitError(f"nested deeper than {MAX_DEPTH} levels", top_key(path))
        if isinstance(item, _LongInt):
            raise JSONLimitError(f"an integer of {len(item.lstrip('-')):,} digits (at most {MAX_INT_DIGITS})",
                                 path or None)
        if finite and isinstance(item, float) and not math.isfinite(item):
            raise JSONLimitError(f"{item} is not a finite number", path or None)
        if isinstance(item, dict):
            stack.extend((v, f"{path}.{k}" if path else str(k), depth + 1) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(item))


def top_key(path):
    """The outermost key of a path (`features[0][0]...` -> `features`): deep paths are long and say little more."""
    return re.split(r"[.\[]", path, maxsplit=1)[0] or None if path else None


def _deep_key(data):
    """The key just before the first run of MAX_DEPTH opening brackets (where a too-deep value starts), if any."""
    raw = data.encode("utf-8", "replace") if isinstance(data, str) else bytes(data)
    found = _OPENERS.search(raw)
    if not found:
        return None
    key = _KEY.search(raw, max(0, found.start() - 400), found.start())
    return key.group(1).decode("utf-8", "replace") if key else None
