"""A server that asks clients to sign: it can only get what each client checked.

The releases come from a small real run (tiny-bert adapters); the client side is
:func:`fednet.federation.signing.sign_release`, as the ClientApp runs it, with the
client's own privacy ledger (see ``test_release_privacy_claims.py`` for the claims).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
from flwr.app import ConfigRecord

from fednet.config import ClientConfig
from fednet.errors import SignatureError
from fednet.federation.signing import read_signed, release_record, sign_release
from fednet.hub import HubStore, encode_public_key, generate_private_key
from fednet.hub.keys import Ed25519PrivateKey
from fednet.hub.manifest import Manifest
from fednet.hub.publish import client_releases, publish_signed_run
from fednet.privacy.ledger import PrivacyLedger

from .conftest import SPAM0, sent_by

Sign = Callable[[ConfigRecord, ClientConfig, Ed25519PrivateKey], ConfigRecord]


@pytest.fixture
def sign(spam0_ledger: PrivacyLedger, honest_run: Path) -> Sign:
    """``sign_release`` as spam-0 runs it: with its own ledger, noise not reproducible."""

    def sign(record: ConfigRecord, client: ClientConfig, key: Ed25519PrivateKey) -> ConfigRecord:
        return sign_release(
            record,
            client,
            key,
            ledger=spam0_ledger,
            reproducible_noise=False,
            keeps_personalized=False,
            released=sent_by(honest_run, "spam-0"),
        )

    return sign


def test_the_client_signs_its_own_release_and_the_server_forwards_it(
    honest_run: Path, tmp_path: Path, sign: Sign
) -> None:
    key = generate_private_key()
    releases = client_releases(honest_run, "spam-0")
    assert {m.kind for m, _ in releases} == {"shared", "personalized"}
    reply = sign(release_record(releases), SPAM0, key)
    signed = read_signed(reply, releases, "spam-0")
    assert {m.owner_public_key for m in signed} == {encode_public_key(key)}
    with HubStore(tmp_path / "hub") as hub:
        for manifest, (_, files) in zip(signed, releases, strict=True):
            assert hub.publish_signed(manifest, files).owner == "spam-0"


@pytest.mark.parametrize("who", ["news-0", "spam-1"])
def test_a_client_refuses_to_sign_another_clients_release(
    honest_run: Path, who: str, sign: Sign
) -> None:
    releases = client_releases(honest_run, who, kinds=("shared",))
    with pytest.raises(ValueError, match="refuses to sign.*not 'spam-0"):
        sign(release_record(releases), SPAM0, generate_private_key())


def test_a_client_refuses_weights_that_do_not_match_the_manifest(
    honest_run: Path, sign: Sign
) -> None:
    (manifest, files), *_ = client_releases(honest_run, "spam-0", kinds=("shared",))
    swapped = {**files, "adapter_model.safetensors": files["adapter_model.safetensors"][:-1]}
    with pytest.raises(ValueError, match="adapter_model.safetensors"):
        sign(release_record([(manifest, swapped)]), SPAM0, generate_private_key())
    other_task = dataclasses.replace(manifest, task="bbc-news")
    with pytest.raises(ValueError, match="task is 'bbc-news'"):
        sign(release_record([(other_task, files)]), SPAM0, generate_private_key())


def test_the_server_checks_what_came_back(honest_run: Path, sign: Sign) -> None:
    releases = client_releases(honest_run, "spam-0", kinds=("shared",))
    reply = sign(release_record(releases), SPAM0, generate_private_key())
    signed = Manifest.from_json(str(reply["shared"]))
    # a signature over another manifest (here: better metrics) is not what was asked
    forged = dataclasses.replace(releases[0][0], metrics={"accuracy": 1.0})
    from fednet.hub.keys import sign_manifest

    other = sign_manifest(forged, generate_private_key())
    with pytest.raises(SignatureError, match="other than the one asked"):
        read_signed(ConfigRecord({"shared": other.to_json()}), releases, "spam-0")
    with pytest.raises(SignatureError, match="does not verify"):
        tampered = dataclasses.replace(signed, round=99).to_json()
        read_signed(ConfigRecord({"shared": tampered}), releases, "spam-0")
    with pytest.raises(SignatureError, match="did not sign"):
        read_signed(ConfigRecord({}), releases, "spam-0")


def test_hub_push_of_a_run_needs_its_clients_signatures(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no client-signed manifests"):
        publish_signed_run(run_dir, tmp_path / "hub")


def test_the_contribution_score_is_in_what_the_client_signs(
    honest_run: Path, tmp_path: Path, sign: Sign
) -> None:
    import json
    import shutil

    run = tmp_path / "run"
    shutil.copytree(honest_run, run)
    rows = [
        {"round": 1, "client": "spam-0", "contribution": 0.2, "method": "gradient-projection"},
        {"round": 2, "client": "spam-0", "contribution": 0.6, "method": "gradient-projection"},
        {"round": 2, "client": "spam-1", "contribution": 0.4, "method": "gradient-projection"},
        {"round": 3, "client": "spam-0", "contribution": None, "method": "gradient-projection"},
    ]
    (run / "contributions.json").write_text(
        json.dumps({"method": "gradient-projection", "rows": rows})
    )
    releases = client_releases(run, "spam-0")
    for draft, _ in releases:  # the mean of its scored rounds, on both of its adapters
        assert draft.contribution == pytest.approx(0.4)
        assert draft.contribution_method == "gradient-projection"
    key = generate_private_key()
    reply = sign(release_record(releases), SPAM0, key)
    signed = read_signed(reply, releases, "spam-0")
    assert [m.contribution for m in signed] == [pytest.approx(0.4)] * 2
    # the score cannot be raised after the client signed, nor signed other than asked
    raised = dataclasses.replace(signed[0], contribution=0.9)
    with pytest.raises(SignatureError, match="does not verify"):
        read_signed(ConfigRecord({signed[0].kind: raised.to_json()}), releases[:1], "spam-0")
    from fednet.hub.keys import sign_manifest

    other = sign_manifest(dataclasses.replace(releases[0][0], contribution=0.9), key)
    with pytest.raises(SignatureError, match="other than the one asked"):
        read_signed(ConfigRecord({other.kind: other.to_json()}), releases[:1], "spam-0")
    with HubStore(tmp_path / "hub") as hub:
        stored = hub.publish_signed(signed[0], releases[0][1])
        assert hub.resolve(stored.name, stored.version).contribution == pytest.approx(0.4)
