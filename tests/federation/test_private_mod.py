"""Under privacy, a failure's free text, a refusal's reason and data counts stay on the client."""

from __future__ import annotations

import pytest
from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from fednet import protocol as P

TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1  # as a ServerApp

SECRET = "row 4711 of /home/alice/diagnoses.csv has an empty label"


def _incoming() -> Message:
    msg = Message(RecordDict(), dst_node_id=1, message_type=MessageType.TRAIN)
    return msg


def _reply_with(records: dict) -> Message:
    return Message(RecordDict(records), reply_to=_incoming())


def test_an_exception_leaves_only_a_fixed_reason(caplog: pytest.LogCaptureFixture) -> None:
    def fail(msg: Message, context: object) -> Message:
        raise ValueError(SECRET)

    reply = P.private_allowlist_mod(_incoming(), None, fail)  # type: ignore[arg-type]
    assert reply.has_error() and reply.error.reason == P.PRIVATE_FAILURE_REASON
    assert SECRET in caplog.text  # the client's own log keeps it


def test_an_error_reply_and_a_refusal_reason_are_replaced() -> None:
    def refuse(msg: Message, context: object) -> Message:
        return _reply_with({P.STATUS: ConfigRecord({"refused": 1, "reason": SECRET})})

    reply = P.private_allowlist_mod(_incoming(), None, refuse)  # type: ignore[arg-type]
    assert reply.content.config_records[P.STATUS]["reason"] == P.PRIVATE_FAILURE_REASON

    def over_budget(msg: Message, context: object) -> Message:
        reason = "client a: this round would take epsilon from 7.9 to 8.3, over the budget 8"
        return _reply_with({P.STATUS: ConfigRecord({"refused": 1, "reason": reason})})

    reply = P.private_allowlist_mod(_incoming(), None, over_budget)  # type: ignore[arg-type]
    assert reply.content.config_records[P.STATUS]["reason"] == P.PRIVATE_BUDGET_REASON


def test_data_counts_never_leave_in_a_private_profile() -> None:
    profile = {
        "client-id": "a",
        "base-model": "tiny-bert",
        "task": "t",
        "label-names": ["x", "y"],
        "lora-rank": 2,
        "lora-alpha": 4.0,
        "data-rows-read": 120,
    }

    def answer(msg: Message, context: object) -> Message:
        return _reply_with({P.PROFILE: ConfigRecord(profile)})

    reply = P.private_allowlist_mod(_incoming(), None, answer)  # type: ignore[arg-type]
    assert reply.has_error() and "data-rows-read" in reply.error.reason
    assert P.allowlist_mod(_incoming(), None, answer).has_error() is False  # type: ignore[arg-type]
