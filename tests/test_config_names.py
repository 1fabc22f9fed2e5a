"""Config names: every name that becomes a path is a checked safe name."""

from __future__ import annotations

from pathlib import Path

import pytest

from fednet.config import parse_preset
from fednet.errors import ConfigError


def _preset(**client: object) -> dict:
    return {"clients": [{"id": "a", "dataset": "sms-spam", **client}]}


def test_task_of_a_file_is_its_stem_never_the_path(tmp_path: Path, monkeypatch) -> None:
    data = tmp_path / "sub" / "my reviews.csv"
    data.parent.mkdir()
    data.write_text("text,label\n")
    cfg = parse_preset(_preset(dataset=str(data)))
    assert cfg.clients[0].task == "my-reviews"
    monkeypatch.chdir(tmp_path)
    for given in ("sub/my reviews.csv", "./sub/my reviews.csv"):
        c = parse_preset(_preset(dataset=given)).clients[0]
        assert c.task == "my-reviews"
        assert c.dataset == str(data.resolve())  # workers elsewhere find the same file
    monkeypatch.chdir(data.parent)
    assert parse_preset(_preset(dataset="my reviews.csv")).clients[0].task == "my-reviews"
    assert parse_preset(_preset()).clients[0].task == "sms-spam"


@pytest.mark.parametrize(
    "client,key",
    [
        ({"id": "../escape"}, "id"),
        ({"id": "a/b"}, "id"),
        ({"task": "/etc"}, "task"),
        ({"task": "../../x"}, "task"),
        ({"base-model": "../m"}, "base-model"),
        ({"encoding": "klingon"}, "encoding"),
    ],
)
def test_unsafe_names_are_refused_naming_the_key(client: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"`clients\[\w+\]\.{key}` must be .*, got ") as info:
        parse_preset(_preset(**client))
    assert repr(next(iter(client.values()))) in str(info.value)


def test_federation_base_model_is_checked() -> None:
    with pytest.raises(ConfigError, match="federation.base-model"):
        parse_preset({**_preset(), "federation": {"base-model": "/abs"}})


def test_union_label_space_accepts_a_file_client(tmp_path: Path) -> None:
    data = tmp_path / "r.csv"
    data.write_text("text,label\n")
    cfg = parse_preset({**_preset(dataset=str(data)), "federation": {"label-space": "union"}})
    assert cfg.clients[0].task == "union"
