"""A peer asked to serve a plain peft adapter that does not fit its base model."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from fednet.hub import HubStore, generate_private_key
from fednet.hub.trust import public_key_of
from fednet.inference import AdapterEngine, MicroBatcher, PeerServer
from fednet.inference.peer import create_peer_app
from tests.hub.foreign import peft_adapter, small_bert, smuggle

from ..loopback import serving


def test_peer_refuses_an_adapter_that_does_not_fit(
    hub_store: HubStore,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # LoRA of a smaller BERT, with a head that happens to fit tiny-bert's hidden size
    adapter = peft_adapter(tmp_path / "small", small_bert(), 32)
    key = generate_private_key()
    smuggle(hub_store, adapter, "small", key)
    hub_store.trust.add("me", public_key_of(key))  # its owner is trusted: only the fit is at issue
    # at start: a clear error, not a traceback from inside peft
    misfit = r"small@v1 does not fit base model 'tiny-bert'.*\[4, 16\]"
    with pytest.raises(ValueError, match=misfit):
        PeerServer(hub_store, peer_id="p", adapters=["small"], register=False).start()
    # while serving: 422 in the peer's error shape, and the peer keeps its adapters
    engine = AdapterEngine("tiny-bert", source=hub_store)
    batcher = MicroBatcher(engine, window_s=0.0)
    app = create_peer_app(engine, batcher, peer_id="p", adapters=["spam-0-shared", "small"])
    try:
        with serving(app) as url:
            bad = httpx.post(
                f"{url}/v1/classify", json={"texts": ["hi"], "adapter": "small"}, timeout=30
            )
            good = httpx.post(f"{url}/v1/classify", json={"texts": ["hi"]}, timeout=30)
    finally:
        batcher.close()
    assert bad.status_code == 422
    assert set(bad.json()) == {"error", "type"}
    assert "does not fit base model 'tiny-bert'" in bad.json()["error"]
    assert good.status_code == 200
    assert list(engine._model.peft_config) == [engine.ensure("spam-0-shared").key]  # noqa: SLF001
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err + caplog.text
