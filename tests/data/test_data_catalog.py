"""The offline catalogue: names, shapes, exact sizes and label names."""

from __future__ import annotations

from collections import Counter

import pytest
from datasets import ClassLabel, Dataset, Value

import fednet.data as data_pkg
from fednet.data import (
    available_datasets,
    create_dataset,
    label_names,
    load_dataset,
    register_dataset,
    to_text_label_dataset,
)

# Exact per-class counts of the files shipped in the pinned packages.
EXPECTED = {
    "bbc-news": {
        "business": 510,
        "entertainment": 386,
        "politics": 417,
        "sports": 511,
        "tech": 401,
    },
    "sms-spam": {"ham": 4220, "spam": 642},
    "tweets-sentiment": {"negative": 16186, "neutral": 15018, "positive": 6954},
}


def test_public_api_is_exported() -> None:
    missing = [name for name in data_pkg.__all__ if not hasattr(data_pkg, name)]
    assert missing == []


def test_builtin_sets_are_registered() -> None:
    assert set(EXPECTED) <= set(available_datasets())
    assert available_datasets() == sorted(available_datasets())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_catalogue_set_shape_labels_and_counts(name: str, request: pytest.FixtureRequest) -> None:
    fixture = {"bbc-news": "bbc", "sms-spam": "sms", "tweets-sentiment": "tweets"}[name]
    ds: Dataset = request.getfixturevalue(fixture)
    expected = EXPECTED[name]

    assert ds.column_names == ["text", "label"]
    assert ds.features["text"] == Value("string")
    assert isinstance(ds.features["label"], ClassLabel)
    assert label_names(ds) == sorted(expected)
    assert ds.num_rows == sum(expected.values())

    names = label_names(ds)
    counts = Counter(names[i] for i in ds["label"])
    assert counts == expected
    assert all(text.strip() for text in ds["text"])
    assert ds.info.dataset_name == name


def test_bbc_total_and_latin1_article(bbc: Dataset) -> None:
    assert bbc.num_rows == 2225
    texts = bbc["text"]
    # One article is Latin-1 encoded; it must decode to a pound sign, not U+FFFD.
    assert not any("\ufffd" in t for t in texts)
    assert any("\u00a3" in t for t in texts)


def test_sms_keeps_unbalanced_quotes(sms: Dataset) -> None:
    # The file is tab-separated and unquoted: a '"' is part of the message.
    assert any('"' in t for t in sms["text"])
    assert not any("\t" in t for t in sms["text"])


def test_load_is_cached_and_aliases_agree() -> None:
    assert load_dataset("sms-spam") is create_dataset("sms-spam")


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown data set 'nope'.*bbc-news.*sms-spam"):
        load_dataset("nope")


@pytest.mark.usefixtures("scratch_registries")
def test_register_custom_loader_and_duplicates() -> None:
    def tiny() -> Dataset:
        return to_text_label_dataset(["a", "b", "c"], ["y", "x", "y"], dataset_name="tiny")

    register_dataset("tiny", tiny)
    ds = load_dataset("tiny")
    assert label_names(ds) == ["x", "y"]
    assert ds["label"] == [1, 0, 1]
    assert "tiny" in available_datasets()

    with pytest.raises(ValueError, match="'tiny' is already registered"):
        register_dataset("tiny", tiny)

    def other() -> Dataset:
        return to_text_label_dataset(["z"], ["q"], dataset_name="tiny")

    register_dataset("tiny", other, overwrite=True)
    assert load_dataset("tiny")["text"] == ["z"]  # re-registering misses the cache


@pytest.mark.usefixtures("scratch_registries")
def test_register_rejects_bad_arguments_and_bad_loaders() -> None:
    with pytest.raises(TypeError, match="name"):
        register_dataset("", lambda: Dataset.from_dict({}))
    with pytest.raises(TypeError, match="callable"):
        register_dataset("x", "not a function")  # type: ignore[arg-type]

    register_dataset("wrong-columns", lambda: Dataset.from_dict({"text": ["a"], "y": [0]}))
    with pytest.raises(TypeError, match=r"exactly the columns.*'y'"):
        load_dataset("wrong-columns")

    register_dataset("int-label", lambda: Dataset.from_dict({"text": ["a"], "label": [0]}))
    with pytest.raises(TypeError, match="ClassLabel"):
        load_dataset("int-label")


def test_to_text_label_dataset_label_rules() -> None:
    ds = to_text_label_dataset(["a", "b", "c"], [10, 2, 2.0])
    assert label_names(ds) == ["2", "10"]  # numeric order, not string order
    assert ds["label"] == [1, 0, 0]

    named = to_text_label_dataset(["a", "b"], [1, 0], label_names=["neg", "pos"])
    assert label_names(named) == ["neg", "pos"]
    assert named["label"] == [1, 0]

    with pytest.raises(ValueError, match=r"ids must be in \[0, 2\)"):
        to_text_label_dataset(["a"], [2], label_names=["neg", "pos"])
    with pytest.raises(ValueError, match=r"not in `label_names`.*'maybe'"):
        to_text_label_dataset(["a"], ["maybe"], label_names=["neg", "pos"])
    with pytest.raises(TypeError, match=r"0.5"):
        to_text_label_dataset(["a"], [0.5])
    with pytest.raises(TypeError, match="mixes"):
        to_text_label_dataset(["a", "b"], ["x", 1])
    with pytest.raises(ValueError, match="same length"):
        to_text_label_dataset(["a", "b"], ["x"])
    with pytest.raises(ValueError, match="no rows"):
        to_text_label_dataset(["  ", None], ["x", "y"])
