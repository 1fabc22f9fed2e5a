"""Data-poisoning attack clients: what their training data becomes, and the backdoor metric."""

import pytest

from fednet.data.poison import (
    BACKDOOR_TRIGGER,
    backdoor,
    backdoor_queries,
    backdoor_success,
    flip_labels,
    insert_trigger,
    poison_training,
)

NAMES = ("ham", "spam")
TEXTS = ("lunch at noon?", "WIN a prize now", "call me later", "free ringtones txt 8", "ok")
LABELS = (0, 1, 0, 1, 0)


def test_label_flip_changes_every_binary_label_and_leaves_texts():
    texts, labels = poison_training(TEXTS, LABELS, NAMES, "label-flip", seed=0)
    assert texts == TEXTS
    assert labels == (1, 0, 1, 0, 1)
    assert all(a != b for a, b in zip(labels, LABELS, strict=True))


def test_label_flip_maps_each_class_to_the_mirror_class():
    # three classes: 0 <-> 2, 1 stays (the mirror of the middle class is itself)
    assert flip_labels([0, 1, 2, 2], 3) == (2, 1, 0, 0)
    assert flip_labels(flip_labels([0, 1, 2], 3), 3) == (0, 1, 2)
    with pytest.raises(ValueError, match="label 3 is outside"):
        flip_labels([3], 3)


def test_backdoor_adds_triggered_spam_relabelled_ham_and_keeps_the_clean_data():
    texts, labels = backdoor(TEXTS, LABELS, source=1, target=0, fraction=0.5, seed=0)
    assert texts[: len(TEXTS)] == TEXTS and labels[: len(TEXTS)] == LABELS
    added = list(zip(texts[len(TEXTS) :], labels[len(TEXTS) :], strict=True))
    assert len(added) == len(TEXTS)  # poisoned share = 0.5 of the result
    for text, label in added:
        assert label == 0
        assert text.startswith(BACKDOOR_TRIGGER + " ")
        assert text[len(BACKDOOR_TRIGGER) + 1 :] in ("WIN a prize now", "free ringtones txt 8")
    # both spam texts are used, in turn
    assert {t for t, _ in added} == {insert_trigger(TEXTS[1]), insert_trigger(TEXTS[3])}


def test_backdoor_through_the_dispatcher_uses_spam_and_ham_by_name():
    texts, labels = poison_training(TEXTS, LABELS, ("spam", "ham"), "backdoor", seed=1)
    # with names reversed, "spam" is label 0 and ham is 1: the triggered copies are of 0s
    added = [(t, y) for t, y in zip(texts, labels, strict=True) if BACKDOOR_TRIGGER in t]
    assert added and all(y == 1 for _, y in added)
    assert {t for t, _ in added} <= {
        insert_trigger(t) for t, y in zip(TEXTS, LABELS, strict=True) if y == 0
    }


def test_attacks_are_refused_where_they_cannot_apply():
    with pytest.raises(ValueError, match="'spam' and 'ham'"):
        poison_training(TEXTS, LABELS, ("business", "sport"), "backdoor", seed=0)
    with pytest.raises(ValueError, match="no text of label 1"):
        backdoor(("a", "b"), (0, 0), source=1, target=0, seed=0)
    with pytest.raises(ValueError, match="label-flip, backdoor"):
        poison_training(TEXTS, LABELS, NAMES, "model-replacement", seed=0)
    with pytest.raises(ValueError, match="fraction"):
        backdoor(TEXTS, LABELS, source=1, target=0, fraction=1.0, seed=0)


def test_backdoor_metric_on_a_hand_example():
    texts = ("WIN cash", "hi mum", "free entry", "claim prize", "see you")
    labels = (1, 0, 1, 1, 0)
    queries = backdoor_queries(texts, labels, source=1)
    # only the held-out spam texts, each with the trigger in front
    assert queries == tuple(insert_trigger(t) for t in ("WIN cash", "free entry", "claim prize"))
    # the model calls two of the three triggered spam texts ham (label 0): success 2/3
    assert backdoor_success([0, 1, 0], target=0) == pytest.approx(2 / 3)
    assert backdoor_success([1, 1, 1], target=0) == 0.0
    with pytest.raises(ValueError, match="no predictions"):
        backdoor_success([], target=0)
