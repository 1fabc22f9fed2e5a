"""Manifest validation, JSON round-trip and the canonical signed payload."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace

import pytest

from fednet.hub.manifest import Manifest, parse_version

DIGEST = "ab" * 32


def test_json_round_trip_normalizes_numbers(make_draft: Callable[..., Manifest]) -> None:
    manifest = make_draft(metrics={"accuracy": 1}, epsilon=3, files={"a.json": DIGEST})
    assert manifest.metrics == {"accuracy": 1.0}
    assert isinstance(manifest.metrics["accuracy"], float)
    assert isinstance(manifest.epsilon, float)
    again = Manifest.from_json(manifest.to_json())
    assert again == manifest
    assert again.label_names == ("neg", "pos", "neutral")


def test_signing_payload_is_canonical_and_skips_signature_and_version(
    make_draft: Callable[..., Manifest],
) -> None:
    manifest = make_draft(files={"a.json": DIGEST})
    payload = manifest.signing_payload()
    data = json.loads(payload)
    assert "signature" not in data and "version" not in data
    assert payload == json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    assert replace(manifest, version=7, signature="x").signing_payload() == payload
    assert replace(manifest, round=4).signing_payload() != payload


@pytest.mark.parametrize(
    ("overrides", "error", "field"),
    [
        ({"name": "a/b"}, ValueError, "`name`"),
        ({"name": ""}, ValueError, "`name`"),
        ({"rank": 0}, ValueError, "`rank`"),
        ({"rank": True}, TypeError, "`rank`"),
        ({"round": -1}, ValueError, "`round`"),
        ({"metrics": {"acc": float("nan")}}, ValueError, "metrics['acc']"),
        ({"epsilon": -1.0}, ValueError, "`epsilon`"),
        ({"delta": 1.0}, ValueError, "`delta`"),
        ({"created_at": "yesterday"}, ValueError, "`created_at`"),
        ({"created_at": "2024-01-01T00:00:00+02:00"}, ValueError, "`created_at`"),
        ({"files": {"../x": DIGEST}}, ValueError, "files key"),
        ({"files": {"a.json": "XYZ"}}, ValueError, "files['a.json']"),
        ({"sketch": "s.safetensors", "files": {"a.json": DIGEST}}, ValueError, "`sketch`"),
        ({"label_names": ("ok", 3)}, TypeError, "label_names[1]"),
    ],
)
def test_invalid_fields_are_named(
    make_draft: Callable[..., Manifest], overrides: dict, error: type, field: str
) -> None:
    with pytest.raises(error) as info:
        make_draft(**overrides)
    assert field in str(info.value)


def test_from_dict_rejects_unknown_and_missing_keys(make_draft: Callable[..., Manifest]) -> None:
    data = make_draft().to_dict()
    with pytest.raises(ValueError, match=r"unknown keys \['colour'\]"):
        Manifest.from_dict({**data, "colour": "red"})
    del data["task"]
    with pytest.raises(ValueError, match=r"missing required keys \['task'\]"):
        Manifest.from_dict(data)
    with pytest.raises(ValueError, match="not valid JSON"):
        Manifest.from_json("{nope")


def test_created_at_accepts_utc_forms(make_draft: Callable[..., Manifest]) -> None:
    assert make_draft().created_at.endswith("Z")
    make_draft(created_at="2024-05-01T12:00:00+00:00")


@pytest.mark.parametrize(("value", "expected"), [(3, 3), ("12", 12), ("latest", "latest")])
def test_parse_version(value: object, expected: object) -> None:
    assert parse_version(value) == expected


@pytest.mark.parametrize("value", [0, -1, "x", True, 1.5, "v1"])
def test_parse_version_rejects(value: object) -> None:
    with pytest.raises(ValueError, match="`version`"):
        parse_version(value)


def test_contribution_is_signed_and_absent_from_the_payload_when_unset(
    make_draft: Callable[..., Manifest],
) -> None:
    from fednet.errors import SignatureError
    from fednet.hub.keys import generate_private_key, sign_manifest, verify_manifest

    key = generate_private_key()
    scored = sign_manifest(
        make_draft(contribution=0.25, contribution_method="gradient-projection"), key
    )
    verify_manifest(scored)
    payload = json.loads(scored.signing_payload())
    assert (payload["contribution"], payload["contribution_method"]) == (
        0.25,
        "gradient-projection",
    )
    # raising, lowering or stripping the score breaks the owner's signature
    for forged in (
        replace(scored, contribution=0.9),
        replace(scored, contribution=None, contribution_method=None),
        replace(scored, contribution_method="leave-one-out"),
    ):
        with pytest.raises(SignatureError):
            verify_manifest(forged)
    # a manifest without a score signs exactly the bytes it signed before the field existed
    plain = make_draft()
    assert "contribution" not in json.loads(plain.signing_payload())
    assert "contribution_method" not in json.loads(plain.signing_payload())
    verify_manifest(sign_manifest(plain, key))
    assert Manifest.from_json(scored.to_json()) == scored


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"contribution": float("inf"), "contribution_method": "m"}, "`contribution`"),
        ({"contribution": 0.5}, "`contribution_method` must name"),
        ({"contribution_method": "m"}, "`contribution` must be set"),
        ({"contribution": 0.5, "contribution_method": ""}, "`contribution_method`"),
    ],
)
def test_contribution_fields_are_checked(
    make_draft: Callable[..., Manifest], overrides: dict, message: str
) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        make_draft(**overrides)
