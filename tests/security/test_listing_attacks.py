"""A hub forging the claims that ``fednet hub ls`` and ``hub show`` display.

The hub's operator rewrites a stored manifest (a lower ε, a higher accuracy,
another owner) and leaves the owner's signature as it was. Readers list
through the hub, on loopback over HTTP and on the store's directory; each row
must say whether its owner's signature verifies against the reader's trust
store, and a listing with a forged row must fail.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from fednet.cli import main
from fednet.hub import encode_public_key, generate_private_key
from fednet.hub.db import adapters_table
from fednet.hub.keys import Ed25519PrivateKey
from fednet.hub.trust import TrustStore, fingerprint, sign_rotation

from .conftest import LiveHub


def _forge(live_hub: LiveHub, name: str, **changes: Any) -> None:
    """Rewrite the stored manifest of ``name`` as the hub's operator can; the signature stays."""
    manifest = live_hub.store.resolve(name).to_dict()
    for field, value in changes.items():
        if field == "accuracy":
            manifest["metrics"]["accuracy"] = value
        else:
            manifest[field] = value
    _store(live_hub, name, manifest)


def _store(live_hub: LiveHub, name: str, manifest: dict[str, Any]) -> None:
    """Store ``manifest`` as the one of ``name``, in the hub's database."""
    with live_hub.store._engine.begin() as conn:  # noqa: SLF001 - the attacker owns the DB
        conn.execute(
            update(adapters_table)
            .where(adapters_table.c.name == name)
            .values(manifest=json.dumps(manifest))
        )


def _rows(out: str) -> dict[str, list[str]]:
    """The listing's table rows (stdout: a header, then one row per adapter), by NAME@VERSION."""
    header, *lines = out.splitlines()
    assert header.split()[:3] == ["NAME@VERSION", "OWNER", "SIGNED"], header
    return {line.split()[0]: line.split() for line in lines}


@pytest.fixture
def published(
    live_hub: LiveHub, adapter_dir: Path, make_draft: Any, key: Ed25519PrivateKey
) -> LiveHub:
    """Two adapters of owner ``spam-0``, ε 2.5 and accuracy 0.8125 each."""
    for name in ("spam-0-shared", "spam-0-personalized"):
        live_hub.store.publish(adapter_dir, make_draft(name=name, owner="spam-0"), key)
    return live_hub


@pytest.mark.parametrize("over", ["http", "directory"])
def test_forged_claims_in_a_listing_are_marked_bad_and_fail(
    published: LiveHub,
    key: Ed25519PrivateKey,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    over: str,
) -> None:
    hub = published.url if over == "http" else str(published.store.root)
    trust = tmp_path / "trust.json"
    TrustStore(trust).add("spam-0", encode_public_key(key))
    _forge(published, "spam-0-shared", epsilon=0.1, accuracy=0.99)
    reader = ["--hub", hub, "--trust-file", str(trust)]

    assert main(["hub", "ls", *reader]) == 1
    out, err = capsys.readouterr()
    rows = _rows(out)
    forged, honest = rows["spam-0-shared@v1"], rows["spam-0-personalized@v1"]
    assert forged[1:3] == ["spam-0", "BAD"] and "0.990" in forged and "0.10" in forged
    assert honest[1:3] == ["spam-0", "ok"] and "0.812" in honest and "2.50" in honest
    footnote = [line for line in err.splitlines() if line.startswith("BAD:")]
    assert len(footnote) == 1 and "spam-0-shared@v1" in footnote[0]
    assert "spam-0-personalized" not in footnote[0]

    assert main(["hub", "show", "spam-0-shared@1", *reader]) == 1
    shown = capsys.readouterr()
    assert json.loads(shown.out)["epsilon"] == 0.1  # printed as the hub served it ...
    assert shown.err.startswith("BAD signature") and "does not verify" in shown.err  # ... marked
    assert main(["hub", "show", "spam-0-personalized", *reader]) == 0
    assert capsys.readouterr().err.startswith("verified")


def test_a_listing_claiming_another_owner_is_marked_bad(
    published: LiveHub, key: Ed25519PrivateKey, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trust = tmp_path / "trust.json"
    for owner in ("spam-0", "news-0"):
        TrustStore(trust).add(owner, encode_public_key(key))
    _forge(published, "spam-0-shared", owner="news-0")
    assert main(["hub", "ls", "--hub", published.url, "--trust-file", str(trust)]) == 1
    assert _rows(capsys.readouterr().out)["spam-0-shared@v1"][1:3] == ["news-0", "BAD"]


def test_honest_unpinned_rows_are_listed_as_unpinned_and_do_not_fail(
    published: LiveHub, key: Ed25519PrivateKey, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trust = tmp_path / "trust.json"
    reader = ["--hub", published.url, "--trust-file", str(trust)]
    assert main(["hub", "ls", *reader]) == 0
    out, err = capsys.readouterr()
    assert {tuple(r[1:3]) for r in _rows(out).values()} == {("spam-0", "unpinned")}
    note = [line for line in err.splitlines() if line.startswith("unpinned:")]
    assert len(note) == 1 and "fednet trust add OWNER KEY" in note[0]
    assert f"spam-0 {fingerprint(encode_public_key(key))}" in note[0]
    assert not any(line.startswith("BAD:") for line in err.splitlines())

    assert main(["hub", "show", "spam-0-shared", *reader]) == 0
    shown = capsys.readouterr()
    assert json.loads(shown.out)["owner"] == "spam-0"
    assert shown.err.startswith("unpinned") and "fednet trust add spam-0" in shown.err
    assert not trust.exists()


def test_pinned_rows_are_ok_and_show_names_owner_and_key(
    published: LiveHub, key: Ed25519PrivateKey, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trust = tmp_path / "trust.json"
    TrustStore(trust).add("spam-0", encode_public_key(key))
    reader = ["--hub", published.url, "--trust-file", str(trust)]
    assert main(["hub", "ls", *reader]) == 0
    out, err = capsys.readouterr()
    assert {tuple(r[1:3]) for r in _rows(out).values()} == {("spam-0", "ok")}
    assert not err
    assert main(["hub", "show", "spam-0-shared@v1", *reader]) == 0
    err = capsys.readouterr().err
    assert err.startswith("verified") and "'spam-0'" in err
    assert fingerprint(encode_public_key(key)) in err


def test_listing_with_tofu_pins_nothing(
    published: LiveHub,
    adapter_dir: Path,
    make_draft: Any,
    key: Ed25519PrivateKey,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # a pinned owner rotates to a new key, and an unpinned owner publishes
    new = generate_private_key()
    rotation = sign_rotation("spam-0-shared", encode_public_key(new), key)
    published.store.publish(
        adapter_dir, make_draft(name="spam-0-shared", owner="spam-0", rotation=rotation), new
    )
    published.store.publish(adapter_dir, make_draft(name="news-0-shared", owner="news-0"), new)
    trust = tmp_path / "trust.json"
    TrustStore(trust).add("spam-0", encode_public_key(key))
    before = trust.read_bytes()
    reader = ["--hub", published.url, "--trust-file", str(trust), "--tofu"]

    assert main(["hub", "ls", *reader]) == 0
    rows = _rows(capsys.readouterr().out)
    assert rows["spam-0-shared@v2"][1:3] == ["spam-0", "ok"]  # rotated to from a pinned key
    assert rows["news-0-shared@v1"][1:3] == ["news-0", "unpinned"]
    assert main(["hub", "show", "news-0-shared", *reader]) == 0
    assert capsys.readouterr().err.startswith("unpinned")
    assert main(["hub", "show", "spam-0-shared", *reader]) == 0
    assert capsys.readouterr().err.startswith("verified")
    assert trust.read_bytes() == before
    # a fresh reader with --tofu and no file writes none
    fresh = tmp_path / "fresh.json"
    assert main(["hub", "ls", "--hub", published.url, "--trust-file", str(fresh), "--tofu"]) == 0
    assert not fresh.exists()


def test_control_characters_cannot_paint_over_a_rows_verdict(
    published: LiveHub, key: Ed25519PrivateKey, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A forged note that moves the cursor up and rewrites its own BAD line as `ok`."""
    trust = tmp_path / "trust.json"
    TrustStore(trust).add("spam-0", encode_public_key(key))
    paint = "\x1b[1A\x1b[2K\rspam-0-shared@v1 spam-0 ok"
    _forge(published, "spam-0-shared", epsilon_note=paint)
    assert main(["hub", "ls", "--hub", published.url, "--trust-file", str(trust)]) == 1
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out
    assert "\\x1b[1A\\x1b[2K\\rspam-0-shared@v1 spam-0 ok" in out  # shown, escaped


def test_show_on_a_hub_directory_refuses_an_answer_for_another_adapter(
    published: LiveHub, key: Ed25519PrivateKey, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The operator stores another owner-signed adapter's manifest under the asked name."""
    trust = tmp_path / "trust.json"
    TrustStore(trust).add("spam-0", encode_public_key(key))
    _store(published, "spam-0-shared", published.store.resolve("spam-0-personalized").to_dict())
    reader = ["--hub", str(published.store.root), "--trust-file", str(trust)]
    assert main(["hub", "show", "spam-0-shared@1", *reader]) == 1
    err = capsys.readouterr().err
    assert "asked for spam-0-shared@1, the hub answered spam-0-personalized@v1" in err
