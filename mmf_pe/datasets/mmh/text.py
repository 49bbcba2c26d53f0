"""The text a model sees for one tweet: cleaned tweet text, then the image's OCR text.

Choices (documented in datasets/mmh/README.md):
- HTML entities are unescaped (`&amp;` -> `&`); whitespace, including newlines, collapses to one space.
- URLs are removed by default (`urls="drop"`): in MMHS150K they are t.co links to the tweet's own image, with no
  words in them. `urls="token"` writes `url` instead, `urls="keep"` leaves them.
- Mentions become `@user` by default (`mentions="user"`): user names carry identity, not content. `"drop"` removes
  them, `"keep"` leaves them.
- Emoji and hashtags are kept as they are (the tokenizer maps emoji to [UNK]; `#word` splits into `#` and `word`).
- The OCR text, cleaned the same way, follows the tweet text after the separator " | " (`OCR_SEPARATOR`); a tweet
  without OCR text is the tweet text alone.
"""
import html
import re

OCR_SEPARATOR = " | "
URL_CHOICES = ("drop", "token", "keep")
MENTION_CHOICES = ("user", "drop", "keep")

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_MENTION = re.compile(r"(?<![\w@])@\w+")
_SPACE = re.compile(r"\s+")


def clean(text, urls="drop", mentions="user"):
    if urls not in URL_CHOICES:
        raise ValueError(f"urls={urls!r}; choose one of {URL_CHOICES}")
    if mentions not in MENTION_CHOICES:
        raise ValueError(f"mentions={mentions!r}; choose one of {MENTION_CHOICES}")
    text = html.unescape(text or "")
    if urls != "keep":
        text = _URL.sub(" url " if urls == "token" else " ", text)
    if mentions != "keep":
        text = _MENTION.sub("@user" if mentions == "user" else " ", text)
    return _SPACE.sub(" ", text).strip()


def join(tweet_text, ocr_text):
    """Tweet text and OCR text as one model input; either may be empty."""
    parts = [part for part in (tweet_text, ocr_text) if part]
    return OCR_SEPARATOR.join(parts)
