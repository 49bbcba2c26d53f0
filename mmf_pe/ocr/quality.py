"""Word error rate of OCR'd captions against the given ones (word-level edit distance / reference words)."""
import re

import editdistance


def words(text):
    """Lower-case words with punctuation dropped: a caption's words as a reader compares them."""
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()


def word_error_rate(pairs):
    """(total word edits / total reference words, reference words) over (ocr_text, given_text) pairs."""
    edits = total = 0
    for hypothesis, reference in pairs:
        reference = words(reference)
        edits += editdistance.eval(words(hypothesis), reference)
        total += len(reference)
    return (edits / total if total else 0.0), total
