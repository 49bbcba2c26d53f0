"""Twitter snowflake ids -> posting time: milliseconds since the Unix epoch = `(id >> 22) + 1288834974657`.

Tweets since 2010-11-04 have snowflake ids (41 bits of milliseconds since Twitter's epoch, then worker and sequence
bits). Older, sequential ids (below ~3e10) and anything that is not a 63-bit decimal number carry no time, and are
refused rather than given a date near 2010-11-04; so are ids whose time lies in the future.
"""
import time

TWITTER_EPOCH_MS = 1288834974657
TIMESTAMP_SHIFT = 22
MIN_OFFSET_MS = 86_400_000  # a snowflake is at least a day past Twitter's epoch; sequential ids map to seconds
FUTURE_SLACK_MS = 86_400_000


class SnowflakeError(ValueError):
    """Not a snowflake tweet id (the message says why)."""


def snowflake_ms(tweet_id, now_ms=None):
    """Posting time of a tweet id (str or int), ms since the Unix epoch; SnowflakeError when it is not a snowflake."""
    text = str(tweet_id)
    if not text.isdigit() or not text.isascii():
        raise SnowflakeError(f"{text[:40]!r} is not a decimal tweet id")
    value = int(text)
    if value >= 2**63:
        raise SnowflakeError(f"{text} does not fit in 63 bits")
    offset = value >> TIMESTAMP_SHIFT
    if offset < MIN_OFFSET_MS:
        raise SnowflakeError(f"{text} is not a snowflake id (a pre-2010-11-04 sequential id carries no time)")
    ms = offset + TWITTER_EPOCH_MS
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    if ms > now_ms + FUTURE_SLACK_MS:
        raise SnowflakeError(f"{text} would be posted in the future ({ms} ms since the epoch)")
    return ms


def snowflake_id(ms, sequence=0):
    """The smallest-but-`sequence` snowflake id of a posting time (for generated data with known times)."""
    if ms - TWITTER_EPOCH_MS < MIN_OFFSET_MS:
        raise SnowflakeError(f"{ms} ms is before snowflakes existed")
    return str(((int(ms) - TWITTER_EPOCH_MS) << TIMESTAMP_SHIFT) | (int(sequence) & (2**22 - 1)))
