"""The label set of a private client's data file does not come from its data.

The label names leave a client in its profile, in its sketch and in the shape
of its head. Read from the file, they show whether one record carries a rare
label: 100 notes labelled ``flu``, against the same with two of them labelled
``hiv``, release ``["flu"]`` and ``["flu", "hiv"]``.
Under privacy the preset must declare the label set (``label-names``), and a
client's failure reaches the server without text that could quote its data.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fednet.config import ConfigError, parse_preset
from fednet.federation.client_data import load_client_data

NOTES = [f"patient note number {i} about a visit" for i in range(100)]


def _file(path: Path, last: str) -> Path:
    """100 notes, the last two labelled ``last`` (a class needs two rows to be split)."""
    rows = ["text,label", *[f"{t},flu" for t in NOTES[:-2]], *[f"{t},{last}" for t in NOTES[-2:]]]
    path.write_text("\n".join(rows) + "\n")
    return path


def _preset(data: Path, *, private: bool, label_names: list[str] | None = None):  # type: ignore[no-untyped-def]
    client: dict[str, object] = {"id": "clinic-0", "dataset": str(data)}
    if label_names is not None:
        client["label-names"] = label_names
    return parse_preset(
        {
            "federation": {"name": "clinic", "base-model": "tiny-bert", "test-fraction": 0.2},
            "clients": [client],
            "privacy": {"enabled": private},
        }
    )


def test_the_attack_a_label_set_read_from_the_file_shows_one_record(tmp_path: Path) -> None:
    """Without privacy the label set is read from the file, as a user expects."""
    out = []
    for name, last in (("a.csv", "flu"), ("b.csv", "hiv")):
        cfg = _preset(_file(tmp_path / name, last), private=False)
        out.append(load_client_data(cfg, cfg.clients[0]).label_names)
    assert out == [("flu",), ("flu", "hiv")]


def test_under_privacy_a_data_file_needs_declared_label_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"clients\[clinic-0\]\.label-names` must list"):
        _preset(_file(tmp_path / "a.csv", "flu"), private=True)


def test_declared_label_names_make_neighbours_release_the_same_label_set(tmp_path: Path) -> None:
    names = ["flu", "hiv", "measles"]
    out = []
    for name, last in (("a.csv", "flu"), ("b.csv", "hiv")):
        cfg = _preset(_file(tmp_path / name, last), private=True, label_names=names)
        out.append(load_client_data(cfg, cfg.clients[0]).label_names)
    assert out == [tuple(names), tuple(names)]


def test_a_private_clients_data_error_reaches_the_server_without_its_text(
    tmp_path: Path,
) -> None:
    """A label outside the declared set fails the client; the server learns that it
    failed, not the label."""
    from flwr.app import ConfigRecord, Context, Message, RecordDict
    from flwr.supercore.task_identity import TaskIdentity

    from fednet.federation.apps import make_client_app

    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    cfg = _preset(_file(tmp_path / "b.csv", "hiv"), private=True, label_names=["flu"])
    app = make_client_app(cfg, state_dir=tmp_path / "state", cache_dir=tmp_path / "cache")
    context = Context(
        run_id=1,
        node_id=1,
        node_config={"client-id": "clinic-0"},
        state=RecordDict(),
        run_config={},
    )
    msg = Message(RecordDict({"config": ConfigRecord({})}), dst_node_id=1, message_type="query")
    try:
        reply = app(msg, context)
        answer = repr(reply.content if reply.has_content() else reply.error)
    except Exception as e:  # noqa: BLE001 - Flower sends str(e) to the server
        answer = f"{type(e)}:<'{e}'>"
    assert "hiv" not in answer
    assert "refused" in answer and "log" in answer
