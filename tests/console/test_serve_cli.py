"""``fednet hub serve`` serves the console at /ui by default, and not with private reads."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import httpx
import pytest

from fednet.privacy.config import PrivacyConfig
from tests.inference.conftest import free_port

from .conftest import ConsoleEnv

pytestmark = pytest.mark.integration


@contextmanager
def hub_serve(env: ConsoleEnv, *extra: str) -> Iterator[tuple[str, list[str]]]:
    """Run ``fednet hub serve`` on a free port; yield its URL and (after) its stderr."""
    port = free_port()
    command: Sequence[str] = [
        sys.executable, "-m", "fednet.cli", "hub", "serve", "--root", str(env.root / "hub"),
        "--port", str(port), *extra,
    ]  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ}
    )
    url = f"http://127.0.0.1:{port}"
    stderr: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.communicate()[1][-2000:]
            try:
                if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "fednet hub serve did not start"
            time.sleep(0.2)
        yield url, stderr
    finally:
        process.terminate()
        stderr.append(process.communicate(timeout=30)[1])


def test_hub_serve_mounts_the_console(console_env: ConsoleEnv) -> None:
    trust = str(console_env.root / "trust.json")
    with hub_serve(console_env, "--trust-file", trust, "--bench-dir", str(console_env.bench)) as (
        url,
        _,
    ):
        page = httpx.get(f"{url}/ui", timeout=60)
        assert page.status_code == 200
        assert 'id="adapter-spam-0-shared" data-status="verified"' in page.text
        assert 'id="adapter-tweets-0-shared" data-status="bad signature"' in page.text
        assert trust in page.text and console_env.report.path.name in page.text
        budget = PrivacyConfig().epsilon_budget  # the default budget shown
        assert f"Budget: ε = {budget:.2f}, this" in page.text
        assert "/ui" not in httpx.get(f"{url}/openapi.json").text  # not part of the API
    with hub_serve(console_env, "--private-reads") as (url, stderr):
        assert httpx.get(f"{url}/ui").status_code == 404
    assert "console /ui is off" in stderr[0]
    with hub_serve(console_env, "--no-ui") as (url, _):
        assert httpx.get(f"{url}/ui").status_code == 404
        assert httpx.get(f"{url}/v1/adapters").status_code == 200
