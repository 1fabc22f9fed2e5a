"""A server that drafts the privacy claims cannot get the owner to sign a false one.

The drafts come from a small real run (tiny-bert adapters) whose summary plays
the server's copy of the client's metrics, through the server's own drafting
(:func:`fednet.hub.publish.client_releases`); the truth is the client's privacy
ledger, charged with real releases and saved where the client keeps it, read
back as the ClientApp reads it (:func:`fednet.federation.signing.client_ledger`).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fednet.federation.signing import client_ledger, read_signed, release_record, sign_release
from fednet.hub import HubStore, encode_public_key, generate_private_key
from fednet.privacy.ledger import PrivacyLedger
from fednet.privacy.randomness import NOT_VALID_NOTE

from .conftest import SPAM0, charge_spam0, claims_of, drafted_run, sent_by

FIELDS = {
    "epsilon": lambda ledger: ledger.epsilon,
    "update_epsilon": lambda ledger: ledger.epsilon_of(("dpsgd", "update")),
    "sketch_epsilon": lambda ledger: ledger.epsilon_of(("sketch",)),
}


def _sign(  # type: ignore[no-untyped-def]
    run: Path, state: Path, *, reproducible_noise: bool = False, keeps_personalized: bool = False
):
    from fednet.hub.publish import client_releases

    releases = client_releases(run, "spam-0")
    assert {m.kind for m, _ in releases} == {"shared", "personalized"}
    key = generate_private_key()
    reply = sign_release(
        release_record(releases),
        SPAM0,
        key,
        ledger=client_ledger(state, SPAM0),
        reproducible_noise=reproducible_noise,
        keeps_personalized=keeps_personalized,
        released=sent_by(run, "spam-0"),
    )
    return read_signed(reply, releases, "spam-0"), releases, key


def test_honest_claims_are_signed_and_published(
    honest_run: Path, spam0_ledger: PrivacyLedger, tmp_path: Path
) -> None:
    signed, releases, key = _sign(honest_run, tmp_path / "state")
    for m in signed:
        assert m.owner_public_key == encode_public_key(key)
        assert m.epsilon == spam0_ledger.epsilon > 8
        assert m.update_epsilon == spam0_ledger.epsilon_of(("dpsgd", "update"))
        assert m.sketch_epsilon == spam0_ledger.epsilon_of(("sketch",))
        assert (m.delta, m.accountant, m.epsilon_note) == (1e-5, "rdp", None)
    with HubStore(tmp_path / "hub") as hub:
        for manifest, (_, files) in zip(signed, releases, strict=True):
            assert hub.publish_signed(manifest, files).epsilon == spam0_ledger.epsilon


def test_a_server_cannot_get_an_understated_epsilon_signed(
    run_dir: Path, spam0_ledger: PrivacyLedger, tmp_path: Path
) -> None:
    """The attack: the server says epsilon 0.1 of a client whose ledger says about 8.9."""
    lie = {**claims_of(spam0_ledger), "epsilon": 0.1, "update_epsilon": 0.1}
    run = drafted_run(run_dir, tmp_path / "run", **lie)
    truth = client_ledger(tmp_path / "state", SPAM0)
    assert truth is not None
    want = re.escape(f"spam-0-shared claims epsilon=0.1, its ledger has {truth.epsilon!r}")
    with pytest.raises(ValueError, match=f"client spam-0 refuses to sign: .*{want}"):
        _sign(run, tmp_path / "state")
    with pytest.raises(ValueError, match="spam-0-personalized claims update_epsilon=0.1"):
        _sign(run, tmp_path / "state")


@pytest.mark.parametrize("field", sorted(FIELDS))
@pytest.mark.parametrize("factor", [0.5, 1.0 + 1e-6, 2.0])
def test_every_epsilon_claim_must_be_the_ledgers(
    run_dir: Path, spam0_ledger: PrivacyLedger, tmp_path: Path, field: str, factor: float
) -> None:
    """Understated or overstated, by half or by a millionth: refused."""
    truth = FIELDS[field](spam0_ledger)
    claims = {**claims_of(spam0_ledger), field: truth * factor}
    run = drafted_run(run_dir, tmp_path / "run", **claims)
    with pytest.raises(ValueError, match=rf"spam-0-shared claims {field}=.*, its ledger has"):
        _sign(run, tmp_path / "state")


def test_an_epsilon_claim_without_a_ledger_is_refused(run_dir: Path, tmp_path: Path) -> None:
    """A client that never made a private release has no ledger: it backs no epsilon."""
    run = drafted_run(
        run_dir,
        tmp_path / "run",
        epsilon=0.5,
        update_epsilon=0.5,
        sketch_epsilon=None,
        delta=1e-5,
        accountant="rdp",
    )
    assert client_ledger(tmp_path / "state", SPAM0) is None
    with pytest.raises(ValueError, match="spam-0-shared claims epsilon=0.5, but the client has no"):
        _sign(run, tmp_path / "state")


def test_an_epsilon_claim_without_a_release_of_its_kind_is_refused(
    run_dir: Path, tmp_path: Path
) -> None:
    """A ledger of a sketch alone backs no epsilon of the weights."""
    from fednet.federation.private import data_fingerprint, ledger_path

    ledger = PrivacyLedger("spam-0", delta=1e-5)
    ledger.charge(noise_multiplier=3.0, sample_rate=1.0, steps=1, kind="sketch")
    ledger.save(ledger_path(tmp_path / "state", "spam-0", data_fingerprint(SPAM0)))
    claims = {**claims_of(ledger), "update_epsilon": ledger.epsilon}
    run = drafted_run(run_dir, tmp_path / "run", **claims)
    with pytest.raises(ValueError, match="update_epsilon=.*ledger has no dpsgd/update release"):
        _sign(run, tmp_path / "state")
    # the same ledger backs the sketch's epsilon: a sketch-only release is signed
    ok = drafted_run(run_dir, tmp_path / "ok", **{**claims, "update_epsilon": None})
    signed, _, _ = _sign(ok, tmp_path / "state")
    assert {(m.update_epsilon, m.epsilon) for m in signed} == {(None, None)}  # no private weights
    assert {m.sketch_epsilon for m in signed} == {ledger.epsilon}


def test_claims_of_none_promise_nothing_and_are_signed(
    run_dir: Path, spam0_ledger: PrivacyLedger, tmp_path: Path
) -> None:
    none = {"epsilon": None, "update_epsilon": None, "sketch_epsilon": None}
    run = drafted_run(run_dir, tmp_path / "run", **none)
    for state in (tmp_path / "state", tmp_path / "no-state"):  # with a ledger and without
        signed, _, _ = _sign(run, state)
        for m in signed:
            assert (m.epsilon, m.update_epsilon, m.sketch_epsilon) == (None, None, None)
            assert (m.delta, m.accountant) == (None, None)


@pytest.mark.parametrize(("field", "value"), [("delta", 1e-3), ("accountant", "gdp")])
def test_delta_and_accountant_must_be_the_ledgers(
    run_dir: Path, spam0_ledger: PrivacyLedger, tmp_path: Path, field: str, value: object
) -> None:
    run = drafted_run(run_dir, tmp_path / "run", **{**claims_of(spam0_ledger), field: value})
    with pytest.raises(ValueError, match=rf"spam-0-shared claims {field}={value!r}, its ledger"):
        _sign(run, tmp_path / "state")


def test_a_server_cannot_drop_the_reproducible_noise_note(
    run_dir: Path, spam0_ledger: PrivacyLedger, tmp_path: Path
) -> None:
    """With reproducible noise the ledger's epsilon is void; signed only with the note."""
    dropped = drafted_run(run_dir, tmp_path / "dropped", **claims_of(spam0_ledger))
    with pytest.raises(ValueError, match="epsilon_note=None, but the client's noise is reprod"):
        _sign(dropped, tmp_path / "state", reproducible_noise=True)
    other = drafted_run(
        run_dir, tmp_path / "other", **claims_of(spam0_ledger), epsilon_note="epsilon fine"
    )
    with pytest.raises(ValueError, match="epsilon_note='epsilon fine'"):
        _sign(other, tmp_path / "state", reproducible_noise=True)
    noted = drafted_run(
        run_dir, tmp_path / "noted", **claims_of(spam0_ledger), epsilon_note=NOT_VALID_NOTE
    )
    signed, _, _ = _sign(noted, tmp_path / "state", reproducible_noise=True)
    assert {m.epsilon_note for m in signed} == {NOT_VALID_NOTE}


def test_a_ledger_of_another_client_backs_nothing(tmp_path: Path) -> None:
    from fednet.federation.private import data_fingerprint, ledger_path

    charge_spam0(tmp_path / "other")
    path = ledger_path(tmp_path / "state", "spam-0", data_fingerprint(SPAM0))
    path.parent.mkdir(parents=True)
    text = (next((tmp_path / "other" / "spam-0").glob("ledger-*.json"))).read_text()
    path.write_text(text.replace('"spam-0"', '"spam-1"'))
    with pytest.raises(ValueError, match="belongs to client 'spam-1', not 'spam-0'"):
        client_ledger(tmp_path / "state", SPAM0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # a sketch-only run's total drafted as if it were the weights' epsilon
        ({"update_epsilon": None}, r"claims epsilon=.* with update_epsilon=None"),
        # the weights' epsilon with the total (and its sketch cost) left out
        ({"epsilon": None}, r"claims epsilon=None with update_epsilon="),
        # the sketch cost dropped from a manifest that claims the rest
        ({"sketch_epsilon": None}, "omits sketch_epsilon; its ledger has"),
        # free text where only the reproducible-noise note may stand
        ({"epsilon_note": "client-level DP, audited"}, "the only note a client signs is"),
    ],
)
def test_claims_must_fit_together_as_the_manifest_defines_them(
    honest_run: Path, spam0_ledger: PrivacyLedger, tmp_path: Path, change: dict, message: str
) -> None:
    """Each value may be the ledger's and the whole still mislead a reader: the server
    drafts the manifest itself, not through fednet's own drafting."""
    import dataclasses

    from fednet.hub.publish import client_releases

    if change.get("update_epsilon", 0) is None:  # the total stands as the weights' claim
        change = {**change, "epsilon": spam0_ledger.epsilon}
    releases = [
        (dataclasses.replace(m, **change), files)
        for m, files in client_releases(honest_run, "spam-0", kinds=("shared",))
    ]
    with pytest.raises(ValueError, match=message):
        sign_release(
            release_record(releases),
            SPAM0,
            generate_private_key(),
            ledger=client_ledger(tmp_path / "state", SPAM0),
            reproducible_noise=False,
            keeps_personalized=False,
            released=sent_by(honest_run, "spam-0"),
        )


def test_a_personalised_adapter_the_client_kept_is_never_signed(
    honest_run: Path, tmp_path: Path
) -> None:
    """In central mode without DP-SGD the personalised adapter never leaves the client,
    so a server that asks to sign one built it, e.g. from the client's unnoised updates."""
    with pytest.raises(ValueError, match="personalized: the client keeps its personalised"):
        _sign(honest_run, tmp_path / "state", keeps_personalized=True)


def _with_preset(run: Path) -> Path:
    """Name in the run's summary a preset whose spam-0 is :data:`SPAM0`, as
    ``fednet simulate`` records the preset it ran; spam-0 is then the run's only
    client (only its ledger is charged)."""
    import json

    from fednet.config import load_preset
    from fednet.federation.private import data_fingerprint

    preset = run / "preset.toml"
    preset.write_text(
        '[federation]\nname = "owner"\nbase-model = "tiny-bert"\n\n'
        '[[clients]]\nid = "spam-0"\ndataset = "sms-spam"\nlora-rank = 2\n'
    )
    assert data_fingerprint(load_preset(preset).client("spam-0")) == data_fingerprint(SPAM0)
    summary = json.loads((run / "summary.json").read_text())
    summary["preset"] = str(preset)
    summary["clients"] = {"spam-0": summary["clients"]["spam-0"]}
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def test_an_owner_pushing_with_its_keys_signs_only_what_its_ledgers_back(
    run_dir: Path,
    spam0_ledger: PrivacyLedger,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The attack: ``fednet hub push --keys-dir`` of a run whose summary says
    epsilon 0.1 of a client whose ledger says about 8.9."""
    from fednet.cli import main

    lie = {**claims_of(spam0_ledger), "epsilon": 0.1, "update_epsilon": 0.1}
    hub = tmp_path / "hub"

    def push(run: Path) -> int:
        return main(
            ["hub", "push", str(run), "--hub", str(hub), "--keys-dir", str(tmp_path / "keys"),
             "--state-dir", str(tmp_path / "state")]
        )  # fmt: skip

    assert push(_with_preset(drafted_run(run_dir, tmp_path / "lie", **lie))) == 2
    err = capsys.readouterr().err
    assert f"spam-0-shared claims epsilon=0.1, its ledger has {spam0_ledger.epsilon!r}" in err
    assert "nothing of" in err and "was published" in err
    with HubStore(hub) as store:
        assert store.list() == []

    no_preset = drafted_run(run_dir, tmp_path / "no-preset", **claims_of(spam0_ledger))
    assert push(no_preset) == 2  # no preset: no ledger can be found to back any epsilon
    assert "names no preset" in capsys.readouterr().err

    assert (
        push(_with_preset(drafted_run(run_dir, tmp_path / "honest", **claims_of(spam0_ledger))))
        == 0
    )
    with HubStore(hub) as store:
        assert store.resolve("spam-0-shared").epsilon == spam0_ledger.epsilon
        assert store.resolve("spam-0-shared").update_epsilon == FIELDS["update_epsilon"](
            spam0_ledger
        )


def test_a_server_cannot_get_a_quality_claim_signed_that_the_client_never_sent(
    honest_run: Path, spam0_ledger: PrivacyLedger, tmp_path: Path
) -> None:
    """The attack: the server drafts accuracy 0.999 for spam-0, whose evaluation said
    0.95; routers rank adapters by the accuracy their owners signed."""
    import json

    from fednet.hub.publish import client_releases

    sent = sent_by(honest_run, "spam-0")
    summary = json.loads((honest_run / "summary.json").read_text())
    summary["clients"]["spam-0"].update(accuracy=0.999, personalized_accuracy=0.999)
    (honest_run / "summary.json").write_text(json.dumps(summary))
    record = release_record(client_releases(honest_run, "spam-0"))
    for released, message in (
        (sent, "spam-0-shared claims accuracy=0.999, the client sent 0.95"),
        (None, "claims accuracy=0.999, but the client sent no accuracy"),
    ):
        with pytest.raises(ValueError, match=message):
            sign_release(
                record,
                SPAM0,
                generate_private_key(),
                ledger=client_ledger(tmp_path / "state", SPAM0),
                reproducible_noise=False,
                keeps_personalized=False,
                released=released,
            )
