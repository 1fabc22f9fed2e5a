"""A failed client is named with its reason, and counts as finished only after a later success."""

from __future__ import annotations

from fednet.strategies.base import short_reason
from fednet.strategies.fedlora import FedLoRA


def test_finished_means_trained_after_the_last_failure() -> None:
    s = FedLoRA(min_clients=2)
    s.trained.update({"a": 2, "b": 2, "c": 1})
    s.reset_round(1)
    s.fail("b", "train", "out of memory")  # failed in round 1, trained again in round 2
    s.reset_round(2)
    s.fail("c", "evaluate", "crashed")  # trained in round 1, failed in round 2
    s.fail("node 7", "profile", "sent no profile")
    assert s.finished_clients() == ["a", "b"]
    assert s.failures["c"] == [{"round": 2, "stage": "evaluate", "reason": "crashed"}]
    assert set(s.failures) == {"b", "c", "node 7"}


def test_short_reason_strips_flower_and_ray_wrapping() -> None:
    wrapped = (
        "<class 'ray.exceptions.RayTaskError(ClientAppException)'>:<'ray::ClientAppActor.run()\n"
        '  File "x.py", line 3\n    raise RuntimeError("disk full")\nRuntimeError: disk full\n'
        "Exception ClientAppException occurred. Message: disk full'>"
    )
    assert short_reason(wrapped) == "disk full"
    assert short_reason("plain") == "plain"
    assert len(short_reason("x" * 2000)) == 500
