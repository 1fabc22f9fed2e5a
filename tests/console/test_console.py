"""The network console over real HTTP on loopback: what it shows, and that the hub's
word is never taken for it."""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from fednet.console import (
    BAD_SIGNATURE,
    SECURITY_HEADERS,
    UNPINNED,
    VERIFIED,
    Console,
    adapter_views,
    budget_views,
    latest_report,
    verify_status,
)
from fednet.hub.keys import encode_public_key, load_public_key
from fednet.hub.trust import TrustStore, fingerprint

from .conftest import BUDGET, EPSILONS, EVIL_KIND, EVIL_METRIC, EVIL_NOTE, SPAM, ConsoleEnv

pytestmark = pytest.mark.integration


def rows(html: str, kind: str, attr: str) -> dict[str, str]:
    """``id="<kind>-<name>" <attr>="<value>"`` of every table row, by name."""
    return dict(re.findall(rf'<tr class="{kind}" id="{kind}-([^"]+)" {attr}="([^"]+)"', html))


def get(env: ConsoleEnv, path: str, **params: str) -> httpx.Response:
    return httpx.get(env.url + path, params=params or None, timeout=60)


def test_adapters_show_the_readers_verification(console_env: ConsoleEnv) -> None:
    page = get(console_env, "/ui")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    statuses = rows(page.text, "adapter", "data-status")
    assert statuses == {
        "mallory-spam": UNPINNED,  # signed, but by a key nobody pinned
        "news-0-personalized": VERIFIED,
        "news-0-shared": VERIFIED,
        "spam-0-personalized": VERIFIED,
        "spam-0-shared": VERIFIED,
        "spam-1-personalized": VERIFIED,
        "spam-1-shared": VERIFIED,
        "tweets-0-personalized": VERIFIED,
        "tweets-0-shared": BAD_SIGNATURE,  # the hub's database says accuracy 0.999
    }
    spam0 = encode_public_key(load_public_key(console_env.root / "keys" / "spam-0.pub"))
    row = page.text.split('id="adapter-spam-0-shared"')[1].split("</tr>")[0]
    assert fingerprint(spam0) in row and "spam-0" in row and "sms-spam" in row
    assert (
        "signature of manifest tweets-0-shared@v1 by owner &#39;tweets-0&#39; does not" in page.text
    )
    # the console's statuses are the verifier's own verdicts on the hub's manifests
    trust = TrustStore(console_env.root / "trust.json")
    for manifest in console_env.store.list():
        assert verify_status(manifest, trust)[0] == statuses[manifest.name]


def test_looking_never_pins_a_key(console_env: ConsoleEnv, tmp_path: Path) -> None:
    """Attack: with trust on first use, a reader that viewed the console would pin the key
    of whoever published under a new owner name first (here: mallory)."""
    trust_file = tmp_path / "trust.json"
    reader = TrustStore(trust_file, tofu=True)
    reader.add("spam-0", TrustStore(console_env.root / "trust.json").keys("spam-0")[0])
    before = trust_file.read_bytes()
    console = Console(console_env.store, trust=reader, bench_dir=tmp_path, probe_timeout_s=0)
    shown = {a.manifest.name: a.status for a in console.overview()["adapters"]}
    assert shown["mallory-spam"] == UNPINNED and shown["spam-1-shared"] == UNPINNED
    assert trust_file.read_bytes() == before and reader.keys("mallory") == []


def test_epsilon_per_client_against_the_budget(console_env: ConsoleEnv) -> None:
    budgets = {b.owner: b for b in console_env.console.overview()["budgets"]}
    assert {o: budgets[o].spent for o in EPSILONS} == pytest.approx(EPSILONS)
    assert budgets["news-0"].over and not budgets["spam-1"].over
    assert budgets["spam-1"].fraction == pytest.approx(7.6 / BUDGET)
    assert budgets["spam-0"].delta == 1e-5 and budgets["spam-0"].accountant == "rdp"
    assert budgets["spam-0"].counted == 2 and budgets["spam-0"].source.startswith("spam-0-")
    # weights published without DP have no ε; the tampered manifest is not counted
    tweets = budgets["tweets-0"]
    assert tweets.spent is None and tweets.sketch_epsilon == 1.0 and tweets.excluded == 1
    assert any("without DP" in n for n in tweets.notes)
    assert budgets["mallory"].spent is None and budgets["mallory"].counted == 0
    html = get(console_env, "/ui").text
    news = html.split('id="budget-news-0"')[1].split("</tr>")[0]
    assert "9.20" in news and "over budget" in news and "115% of 8.00" in news
    assert "--epsilon-budget" in html and "verified</em> signed manifests" in html


def test_a_forged_epsilon_is_not_believed(console_env: ConsoleEnv) -> None:
    """Attack: the hub (or anyone with its database) lowers an owner's ε in a manifest."""
    trust = TrustStore(console_env.root / "trust.json")
    signed = console_env.store.resolve("spam-1-shared")
    forged = dataclasses.replace(signed, epsilon=0.5, update_epsilon=0.4)
    views = adapter_views([forged], trust)
    assert views[0].status == BAD_SIGNATURE
    assert budget_views(views, budget=BUDGET)[0].spent is None
    both = adapter_views([forged, console_env.store.resolve("spam-1-personalized")], trust)
    assert budget_views(both, budget=BUDGET)[0].spent == pytest.approx(7.6)


def test_peers_up_and_down_with_latency(console_env: ConsoleEnv) -> None:
    html = get(console_env, "/ui").text
    assert rows(html, "peer", "data-state") == {"news-0": "down", "spam-1": "up"}
    peers = {p.peer.peer_id: p for p in console_env.console.overview()["peers"]}
    up, down = peers["spam-1"], peers["news-0"]
    assert up.peer.up and up.probe_ms is not None and up.probe_ms > 0 and up.key_pinned
    assert up.peer.endpoint == console_env.peer.url and up.heartbeat_age_s < 60
    assert not down.peer.up and down.heartbeat_age_s >= 590
    assert down.probe_ms is None and down.probe_error and down.key_pinned
    row = html.split('id="peer-news-0"')[1].split("</tr>")[0]
    assert console_env.dead_endpoint in row and "ConnectError" in row


def test_query_box_routes_and_shows_provenance(console_env: ConsoleEnv) -> None:
    page = get(console_env, "/ui/ask", q=SPAM)
    assert page.status_code == 200, page.text
    label = re.search(r'<b id="answer-label">([^<]+)</b>', page.text)
    answered = re.search(r'<span id="answered-by">([^<]+)</span>', page.text)
    assert label and answered
    peer, adapter = answered.group(1).split(",")[0].split("/")
    assert peer == "spam-1" and adapter in console_env.peer.adapters
    # the answer is what the peer itself says for that adapter
    direct = httpx.post(
        f"{console_env.peer.url}/v1/classify", json={"texts": [SPAM], "adapter": adapter}
    ).json()
    assert direct["labels"] == [label.group(1)]
    assert console_env.peer.url in page.text  # provenance names the endpoint
    decision = page.text.split('id="decision"')[1].split("</table>")[0]
    assert decision.count("<tr class=") == 2  # the live peer's two adapters
    assert "spam-1/spam-1-personalized" in decision and "spam-1/spam-1-shared" in decision
    # the router learned the peer's latency, and the overview shows it
    peers = {p.peer.peer_id: p for p in console_env.console.overview()["peers"]}
    assert peers["spam-1"].routed_ms is not None and peers["spam-1"].routed_ms > 0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"q": ""}, "query is empty"),
        ({"q": "x" * 2001}, "2001 characters; the maximum is 2000"),
        ({"q": "hello", "mode": "<b>vote</b>"}, "unknown mode &#39;&lt;b&gt;vote&lt;/b&gt;&#39;"),
        ({"q": "hello", "k": "0"}, "`k` must be a whole number in 1..64, got &#39;0&#39;"),
    ],
)
def test_bad_queries_are_refused_clearly(
    console_env: ConsoleEnv, params: dict[str, str], message: str
) -> None:
    page = get(console_env, "/ui/ask", **params)
    assert page.status_code == 400
    assert message in page.text and '<p class="error" id="error">' in page.text


def test_markup_in_manifests_and_queries_is_shown_as_text(console_env: ConsoleEnv) -> None:
    page = get(console_env, "/ui")
    html = page.text
    assert "<script" not in html.lower() and "<img src=x" not in html and "<b>forged" not in html
    assert "&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&#34;document.title=&#39;pwned&#39;&#34;&gt;" in html
    assert "&lt;/td&gt;&lt;b&gt;forged&lt;/b&gt;" in html
    for key, value in SECURITY_HEADERS.items():
        assert page.headers[key] == value
    assert "script-src" not in page.headers["content-security-policy"]  # default-src 'none'
    query = "<script>alert(1)</script> free prize"
    asked = get(console_env, "/ui/ask", q=query).text
    assert "<script" not in asked.lower() and "&lt;script&gt;alert(1)&lt;/script&gt;" in asked
    assert EVIL_KIND and EVIL_NOTE and EVIL_METRIC  # the fields published in conftest


def test_plots_of_the_latest_report_and_nothing_else(console_env: ConsoleEnv) -> None:
    html = get(console_env, "/ui").text
    report = console_env.report
    assert report.path.name in html and len(report.plots) == 4
    for filename in report.plots.values():
        assert f'src="/ui/plots/{filename}"' in html
        image = get(console_env, f"/ui/plots/{filename}")
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        assert image.content == (console_env.bench / filename).read_bytes()
    refused = [
        "/ui/plots/secret.png",  # in the directory, not in the report
        f"/ui/plots/{report.path.name}",
        "/ui/plots/..%2Ftrust.json",
        "/ui/plots/%2e%2e%2f%2e%2e%2fhub%2fhub.db",
        "/ui/plots/..%5Ctrust.json",
    ]
    for path in refused:
        response = get(console_env, path)
        assert response.status_code == 404, path
        assert b"SQLite" not in response.content and b"owners" not in response.content
    # a client that sends the dots unnormalised gets nothing either
    parts = urlsplit(console_env.url)
    for raw in ("/ui/plots/../../trust.json", "/ui/plots/../bench/secret.png"):
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        conn.request("GET", raw)
        response = conn.getresponse()
        body = response.read()
        conn.close()
        assert response.status == 404 and b"owners" not in body and b"not a plot" not in body


def test_latest_report_offers_only_its_own_plain_pngs(tmp_path: Path) -> None:
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"\x89PNG outside")
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "ok.png").write_bytes(b"\x89PNG ok")
    (bench / "old.png").write_bytes(b"\x89PNG old")
    os.symlink(outside, bench / "link.png")
    report = {"schema": "fednet-bench/1", "created": "now", "preset": "p", "quick": True}
    (bench / "20260101-000000.json").write_text(json.dumps({**report, "plots": {"a": "old.png"}}))
    plots = {"a": "ok.png", "b": "../outside.png", "c": "link.png", "d": "ok.json", "e": 3}
    (bench / "20261201-000000.json").write_text(json.dumps({**report, "plots": plots}))
    (bench / "aggregation-20991231-000000.json").write_text("{}")  # another benchmark's
    (bench / "20991231-000000.json").write_text("{not json")
    found, note = latest_report(bench)
    assert found is not None and found.path.name == "20261201-000000.json"
    assert found.plots == {"a": "ok.png"} and found.missing == ("b", "c", "d", "e")
    assert "20991231-000000.json" in note
    empty, why = latest_report(tmp_path / "nowhere")
    assert empty is None and "make bench" in why


def test_a_damaged_manifest_row_is_named_not_a_crash(
    console_env: ConsoleEnv, tmp_path: Path
) -> None:
    from sqlalchemy import update

    from fednet.hub import HubStore, generate_private_key
    from fednet.hub.db import adapters_table
    from fednet.hub.publish import publish_adapter_dir

    with HubStore(tmp_path / "hub") as store:
        adapter = console_env.root / "run" / "personalized" / "spam-0"
        key = generate_private_key()
        publish_adapter_dir(adapter, store, name="solo", owner="solo", key=key)
        with store._engine.begin() as conn:  # noqa: SLF001 - the test breaks the database
            conn.execute(update(adapters_table).values(manifest="{not json"))
        console = Console(store, trust=TrustStore(None, keys={}), bench_dir=tmp_path)
        shown = console.overview()
        assert shown["adapters"] == [] and "manifest is not valid JSON" in shown["hub_error"]
        html = console.render("overview.html", **shown)
        assert 'id="hub-error"' in html and "manifest is not valid JSON" in html


def test_unsigned_manifests_are_called_so(console_env: ConsoleEnv) -> None:
    trust = TrustStore(console_env.root / "trust.json")
    signed = console_env.store.resolve("spam-0-shared")
    stripped = dataclasses.replace(signed, signature="")
    assert verify_status(stripped, trust)[0] == "unsigned"
    assert verify_status(signed, trust)[0] == VERIFIED


def test_local_mode_answers_in_the_hub_process(console_env: ConsoleEnv, tmp_path: Path) -> None:
    console = Console(
        console_env.store,
        trust=TrustStore(console_env.root / "trust.json"),
        bench_dir=tmp_path,
        local=True,
        cache_dir=tmp_path / "cache",
    )
    try:
        answer = console.ask(SPAM, mode="cascade", k=1)
        assert answer.task == "sms-spam" and answer.calls[0].endpoint is None
        # only verified adapters are candidates: not the unpinned or the tampered one
        keys = {s.candidate.adapter for s in answer.decision.ranked}
        assert len(keys) == 7 and not keys & {"mallory-spam", "tweets-0-shared"}
        html = console.render(
            "ask.html", answer=answer, error=None, query=SPAM, mode="cascade", k="1"
        )
        assert "in this process" in html and "run the adapters in this process" in html
    finally:
        console.close()


def test_only_peers_with_a_pinned_key_are_probed(tmp_path: Path) -> None:
    # the page is open to anyone: a registration naming an internal address must not
    # make the console host request it unless the reader pinned that owner's key
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from fednet.console.state import peer_views
    from fednet.hub.keys import generate_private_key
    from fednet.hub.peers import PeerInfo, sign_peer_request

    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        alice = generate_private_key()
        known = encode_public_key(alice.public_key())
        stranger = encode_public_key(generate_private_key().public_key())
        trust = TrustStore(tmp_path / "trust.json")
        trust.add("alice", known)
        signed = sign_peer_request(
            alice,
            action="register",
            peer_id="a",
            owner="alice",
            endpoint=url,
            base_model="tiny-bert",
        )
        peers = [
            PeerInfo(
                peer_id="a",
                endpoint=url,
                base_model="tiny-bert",
                owner="alice",
                public_key=known,
                registration=json.dumps(signed.to_dict()),
            ),
            PeerInfo(  # alice's key, but the hub rewrote the endpoint she signed
                peer_id="r",
                endpoint=url + "/elsewhere",
                base_model="tiny-bert",
                owner="alice",
                public_key=known,
                registration=json.dumps(signed.to_dict()),
            ),
            PeerInfo(
                peer_id="m",
                endpoint=url,
                base_model="tiny-bert",
                owner="mallory",
                public_key=stranger,
            ),
        ]
        views = {v.peer.peer_id: v for v in peer_views(peers, trust, now=0.0)}
    finally:
        server.shutdown()
    assert hits == ["/v1/health"]  # alice's peer only
    assert views["a"].probe_ms is not None and views["a"].key_pinned
    assert views["m"].probe_ms is None and not views["m"].key_pinned
    assert views["m"].probe_error == "not probed: key not pinned"
    assert views["r"].probe_ms is None
    assert views["r"].probe_error == "not probed: record not signed by its owner"
