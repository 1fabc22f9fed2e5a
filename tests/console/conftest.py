"""A hub worth looking at: signed adapters (three verified owners, a tampered manifest,
an owner nobody pinned, with markup in its fields), a live peer and a dead one, and
the latest benchmark report, served with the console on loopback."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fednet.console import BenchReport, Console, latest_report, mount_console
from fednet.hub import HubClient, HubStore, Manifest, create_app, generate_private_key
from fednet.hub.publish import client_key, keys_dir_trust, publish_run
from fednet.hub.trust import TrustStore
from fednet.inference import PeerConfig, PeerServer, owned_adapters
from tests.inference.conftest import break_signature, free_port
from tests.inference.fake_run import write_run

from ..loopback import serving

REPO = Path(__file__).resolve().parents[2]
TOKEN = "console-test-token"
BUDGET = 8.0
EPSILONS = {"news-0": 9.2, "spam-0": 3.1, "spam-1": 7.6}  # tweets-0: weights without DP
EVIL_KIND = "<script>document.title='pwned'</script>"
EVIL_NOTE = "<img src=x onerror=\"document.title='pwned'\">"
EVIL_METRIC = "</td><b>forged</b>"
SPAM = "WINNER!! claim your free prize now, text WIN to 80086"


@dataclass
class ConsoleEnv:
    url: str
    store: HubStore
    console: Console
    root: Path
    bench: Path
    report: BenchReport
    peer: PeerServer
    dead_endpoint: str


def copy_latest_report(dest: Path) -> BenchReport:
    """Copy the repository's latest benchmark report and its plots into ``dest``."""
    report, why = latest_report(REPO / "bench" / "results")
    assert report is not None, why
    dest.mkdir(parents=True)
    shutil.copy2(report.path, dest / report.path.name)
    for filename in report.plots.values():
        shutil.copy2(report.path.parent / filename, dest / filename)
    copied, why = latest_report(dest)
    assert copied is not None and copied.plots == report.plots, why
    return copied


def publish_evil(store: HubStore, run: Path) -> Manifest:
    """An adapter of an owner nobody pinned, with markup in every free-text field."""
    adapter = run / "personalized" / "spam-0"
    rank = json.loads((adapter / "adapter_config.json").read_text())["r"]
    draft = Manifest(
        name="mallory-spam",
        owner="mallory",
        base_model="tiny-bert",
        task="sms-spam",
        rank=rank,
        label_names=("ham", "spam"),
        kind=EVIL_KIND,
        epsilon_note=EVIL_NOTE,
        metrics={EVIL_METRIC: 0.5},
    )
    return store.publish(adapter, draft, generate_private_key())


@pytest.fixture(scope="session")
def console_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleEnv]:
    root = tmp_path_factory.mktemp("console")
    run = write_run(root / "run", epsilons=EPSILONS)
    keys = root / "keys"
    store = HubStore(root / "hub", peer_timeout=60.0)
    publish_run(run, store, vet=None, keys_dir=keys)
    publish_evil(store, run)
    break_signature(store, "tweets-0-shared")
    # the reader pinned every client's own key, in a trust store file
    trust = TrustStore(root / "trust.json")
    for owner, owner_keys in keys_dir_trust(keys).as_mapping().items():
        trust.add(owner, owner_keys[0])
    report = copy_latest_report(root / "bench")
    (root / "bench" / "secret.png").write_bytes(b"not a plot of the report")
    app = create_app(store, write_token=TOKEN)
    console = mount_console(
        app, store, trust=trust, bench_dir=root / "bench", epsilon_budget=BUDGET
    )
    # a peer that registered ten minutes ago and never again: down, and nothing listens
    dead = f"http://127.0.0.1:{free_port()}"
    with HubStore(root / "hub", clock=lambda: time.time() - 600.0) as earlier:
        earlier.register_peer(
            "news-0", dead, "tiny-bert", ["news-0-personalized"],
            owner="news-0", key=client_key(keys, "news-0"),
        )  # fmt: skip
    with serving(app) as url:
        hub = HubClient(url, token=TOKEN, timeout=10.0, trust=keys_dir_trust(keys))
        peer = PeerServer(
            hub,
            peer_id="spam-1",
            adapters=owned_adapters(hub, "spam-1"),
            config=PeerConfig(heartbeat_s=5.0),
            cache_dir=root / "peer-cache",
            key=client_key(keys, "spam-1"),
        )
        peer.start()
        try:
            yield ConsoleEnv(url, store, console, root, root / "bench", report, peer, dead)
        finally:
            peer.stop()
            hub.close()
            console.close()
            store.close()
