"""MMHS150K label rules: three annotator labels (0 NotHate, 1 Racist, 2 Sexist, 3 Homophobe, 4 Religion,
5 OtherHate) -> one binary label.

- `two_of_three` (default): hate when at least 2 of 3 annotators chose a non-zero class (the dataset authors' rule;
  val/test are about balanced under it).
- `majority`: the 6-class majority (>= 2 equal votes) decides: hate when it is a hate class, not hate when it is 0;
  no answer (None) when all three differ, e.g. [1, 2, 0].
- `any`: hate when any annotator chose a non-zero class (far more positives; the paper's ~74 % positive MMH
  validation set points to a rule like this one).
"""
from collections import Counter

CLASSES = ("NotHate", "Racist", "Sexist", "Homophobe", "Religion", "OtherHate")
RULES = ("two_of_three", "majority", "any")
DEFAULT_RULE = "two_of_three"


class LabelError(ValueError):
    pass


def validate(labels):
    """The three annotator labels as a list of ints in 0..5; LabelError says what is wrong otherwise."""
    if not isinstance(labels, (list, tuple)) or len(labels) != 3:
        raise LabelError(f"expected 3 annotator labels, got {labels!r}")
    for value in labels:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < len(CLASSES):
            raise LabelError(f"annotator label {value!r} is not one of 0..{len(CLASSES) - 1} in {list(labels)!r}")
    return list(labels)


def majority_class(labels):
    """The class chosen by at least 2 of 3 annotators, or None when all three differ."""
    value, count = Counter(validate(labels)).most_common(1)[0]
    return value if count >= 2 else None


def binary_label(labels, rule=DEFAULT_RULE):
    """1 (hate) / 0 (not hate) under `rule`; None where the rule has no answer (only `majority` has such cases)."""
    labels = validate(labels)
    hateful = sum(1 for value in labels if value != 0)
    if rule == "two_of_three":
        return int(hateful >= 2)
    if rule == "any":
        return int(hateful >= 1)
    if rule == "majority":
        winner = majority_class(labels)
        return None if winner is None else int(winner != 0)
    raise ValueError(f"unknown MMH label rule {rule!r}; choose one of {', '.join(RULES)}")


def summarize(labels_per_record):
    """Positive rate under every rule: {rule: (positives, answered)} for a list of 3-label lists."""
    out = {}
    for rule in RULES:
        values = [binary_label(labels, rule) for labels in labels_per_record]
        answered = [v for v in values if v is not None]
        out[rule] = (sum(answered), len(answered))
    return out


def rate(positives, total):
    return f"{100.0 * positives / total:5.1f} %" if total else "    - "
