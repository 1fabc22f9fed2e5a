"""Fixtures of the red-team suite: a real hub on loopback with scoped tokens.

The hub fixtures (a tiny PEFT adapter, keys, drafts) come from the hub suite;
the published fake run comes from the inference suite.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fednet.hub import HubStore, create_app

from ..hub.conftest import adapter_dir, key, make_draft, other_key  # noqa: F401
from ..inference.conftest import run_dir  # noqa: F401
from ..loopback import serving


@dataclass
class LiveHub:
    """A hub service over a real store, and one token per role."""

    store: HubStore
    url: str
    publish: str
    heartbeat: str
    read: str


@pytest.fixture
def live_hub(tmp_path: Path) -> Iterator[LiveHub]:
    with HubStore(tmp_path / "hub") as store:
        tokens = {
            scope: store.tokens.create(scope, label=f"{scope} only")
            for scope in ("publish", "heartbeat", "read")
        }
        with serving(create_app(store)) as url:
            yield LiveHub(store, url, tokens["publish"], tokens["heartbeat"], tokens["read"])
