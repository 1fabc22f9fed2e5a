"""Safe names: nothing that becomes a path can climb out of its directory."""

from __future__ import annotations

import pytest

from fednet.names import check_name, is_safe_name, name_from_path


@pytest.mark.parametrize("good", ["bbc-news", "spam-0", "tiny-bert", "a.b_c-1", "x" * 128])
def test_safe_names_pass_unchanged(good: str) -> None:
    assert check_name("task", good) == good


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "/etc/passwd",
        "../x",
        "a/b",
        "..",
        "a..b",
        ".hidden",
        "-x",
        "x" * 129,
        "a b",
        "c:\\x",
        "é",
    ],
)
def test_unsafe_names_are_refused_naming_the_key(bad: str) -> None:
    with pytest.raises(ValueError, match=r"`clients\[a\].task`"):
        check_name("clients[a].task", bad)


def test_non_string_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="`id` must be a str"):
        check_name("id", 3)


@pytest.mark.parametrize(
    "path,name",
    [
        ("/home/me/reviews.csv", "reviews"),
        ("data/x.tsv", "x"),
        ("x.jsonl", "x"),
        ("/d/My Reviews (2024).csv", "My-Reviews-2024"),
        ("../up/..hidden..csv", "hidden"),
    ],
)
def test_name_from_path_is_the_stem_made_safe(path: str, name: str) -> None:
    assert name_from_path(path) == name


def test_name_from_path_with_nothing_safe_left() -> None:
    with pytest.raises(ValueError, match="cannot derive a safe `task`"):
        name_from_path("/d/###.csv", key="task")


@pytest.mark.parametrize("name", ["spam-0\n", "spam-0\r\n", "a\nb"])
def test_a_line_break_is_never_part_of_a_safe_name(name):
    assert not is_safe_name(name)
    with pytest.raises(ValueError):
        check_name("client id", name)
