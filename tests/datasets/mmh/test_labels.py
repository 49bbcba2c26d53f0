"""Label rules on every 3-annotator pattern class (and every permutation and class value of each)."""
import itertools

import pytest

from mmf_pe.datasets.mmh.labels import LabelError, binary_label, majority_class, summarize, validate

# pattern class -> (an example, two_of_three, majority, any, majority_class of the example)
PATTERN_CLASSES = {
    "all NotHate": ([0, 0, 0], 0, 0, 0, 0),
    "one hate vote": ([3, 0, 0], 0, 0, 1, 0),
    "two hate votes, same class": ([2, 2, 0], 1, 1, 1, 2),
    "two hate votes, different classes": ([1, 2, 0], 1, None, 1, None),
    "three hate votes, same class": ([5, 5, 5], 1, 1, 1, 5),
    "three hate votes, two agree": ([4, 1, 4], 1, 1, 1, 4),
    "three hate votes, all differ": ([1, 2, 3], 1, None, 1, None),
}


def pattern_class(labels):
    """Independent classification of a 3-label list into the classes above."""
    hate = [v for v in labels if v]
    if not hate:
        return "all NotHate"
    if len(hate) == 1:
        return "one hate vote"
    distinct = len(set(hate))
    if len(hate) == 2:
        return "two hate votes, same class" if distinct == 1 else "two hate votes, different classes"
    return {1: "three hate votes, same class", 2: "three hate votes, two agree", 3: "three hate votes, all differ"}[
        distinct]


@pytest.mark.parametrize("name", sorted(PATTERN_CLASSES))
def test_each_pattern_class_in_every_order(name):
    example, two_of_three, majority, any_, winner = PATTERN_CLASSES[name]
    for labels in set(itertools.permutations(example)):
        labels = list(labels)
        assert binary_label(labels) == two_of_three  # the default is the dataset authors' rule
        assert binary_label(labels, "two_of_three") == two_of_three
        assert binary_label(labels, "majority") == majority
        assert binary_label(labels, "any") == any_
        assert majority_class(labels) == winner


def test_all_216_label_triples_follow_their_class():
    seen = set()
    for labels in itertools.product(range(6), repeat=3):
        labels = list(labels)
        name = pattern_class(labels)
        seen.add(name)
        _, two_of_three, majority, any_, _ = PATTERN_CLASSES[name]
        assert (binary_label(labels, "two_of_three"), binary_label(labels, "any")) == (two_of_three, any_)
        if majority is None:
            assert binary_label(labels, "majority") is None and majority_class(labels) is None
        else:
            winner = majority_class(labels)
            assert labels.count(winner) >= 2 and binary_label(labels, "majority") == int(winner != 0)
    assert seen == set(PATTERN_CLASSES)


@pytest.mark.parametrize("bad", [[0, 7, 1], [-1, 0, 0], [0, 0], [0, 0, 0, 0], None, [0, "1", 0], [True, 0, 0],
                                 [0, 1.0, 0]])
def test_invalid_labels_are_refused(bad):
    with pytest.raises(LabelError, match="label"):
        validate(bad)
    with pytest.raises(LabelError):
        binary_label(bad)


def test_unknown_rule():
    with pytest.raises(ValueError, match="unknown MMH label rule 'mostly'"):
        binary_label([1, 1, 0], "mostly")


def test_summarize_counts_answered_tweets_per_rule():
    rates = summarize([[0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 2, 0]])
    assert rates == {"two_of_three": (2, 4), "majority": (1, 3), "any": (3, 4)}
