"""The console in a real headless Chromium (Debian's ``chromium``), against a hub with
published adapters and a live peer: what the browser's DOM shows, and a screenshot.

``FEDNET_CONSOLE_SCREENSHOTS=docs`` also copies the screenshots to ``docs/``
(``make console-screenshot``). Without Chromium the test is skipped, unless
``FEDNET_REQUIRE_BROWSER`` is set (CI sets it), when it fails.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlencode

import pytest

from fednet.console import BAD_SIGNATURE, UNPINNED, VERIFIED

from .conftest import SPAM, ConsoleEnv

pytestmark = [pytest.mark.browser, pytest.mark.integration]

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)
WINDOW = (1280, 1600)


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium binary, or a skip (a failure when ``FEDNET_REQUIRE_BROWSER`` is set).

    Session-scoped and asked for first, so a missing browser is reported before the
    hub is built."""
    found = os.environ.get("FEDNET_CHROMIUM") or shutil.which("chromium")
    if found and os.access(found, os.X_OK):
        return found
    message = (
        "headless Chromium is not installed: `apt-get install -y chromium` as root "
        "(or `make chromium`), or set FEDNET_CHROMIUM to its path"
    )
    if os.environ.get("FEDNET_REQUIRE_BROWSER"):
        pytest.fail(message)
    pytest.skip(message + "; FEDNET_REQUIRE_BROWSER=1 makes this a failure")


def browse(chromium: str, url: str, tmp_path: Path, *extra: str) -> str:
    """Run Chromium once on ``url`` with a fresh profile; return what it printed."""
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)
    command = [chromium, *FLAGS, f"--user-data-dir={profile}", *extra, url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, f"{command} exited {done.returncode}: {done.stderr[-2000:]}"
    return done.stdout


def dump_dom(chromium: str, url: str, tmp_path: Path) -> str:
    dom = browse(chromium, url, tmp_path, "--dump-dom")
    assert "</html>" in dom, dom[-500:]
    return dom


def screenshot(chromium: str, url: str, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    size = f"--window-size={WINDOW[0]},{WINDOW[1]}"
    browse(chromium, url, tmp_path, f"--screenshot={path}", size, "--virtual-time-budget=10000")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == WINDOW
    keep = os.environ.get("FEDNET_CONSOLE_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(keep) / name)
    return path


def test_console_in_headless_chromium(
    chromium: str, console_env: ConsoleEnv, tmp_path: Path
) -> None:
    ask_url = f"{console_env.url}/ui/ask?{urlencode({'q': SPAM})}"
    asked = dump_dom(chromium, ask_url, tmp_path)
    assert re.search(r'<b id="answer-label">(ham|spam)</b>', asked), asked[-3000:]
    answered = re.search(r'<span id="answered-by">([^<]+)</span>', asked)
    assert answered and answered.group(1).startswith("spam-1/spam-1-")
    assert console_env.peer.url in asked  # the call's provenance names the peer
    assert asked.count('<tr class="chosen">') >= 1 and "sketch router" in asked

    dom = dump_dom(chromium, f"{console_env.url}/ui", tmp_path)
    statuses = dict(
        re.findall(r'<tr class="adapter" id="adapter-([^"]+)" data-status="([^"]+)"', dom)
    )
    assert statuses["spam-0-shared"] == VERIFIED and statuses["news-0-personalized"] == VERIFIED
    assert statuses["tweets-0-shared"] == BAD_SIGNATURE
    assert statuses["mallory-spam"] == UNPINNED and len(statuses) == 9
    peers = dict(re.findall(r'<tr class="peer" id="peer-([^"]+)" data-state="([^"]+)"', dom))
    assert peers == {"news-0": "down", "spam-1": "up"}
    spam1 = dom.split('id="peer-spam-1"')[1].split("</tr>")[0]
    assert re.search(r'<td class="probe">[0-9.]+ ms</td>', spam1)
    news = dom.split('id="budget-news-0"')[1].split("</tr>")[0]
    assert "9.20" in news and "over budget" in news
    for filename in console_env.report.plots.values():
        assert f'src="/ui/plots/{filename}"' in dom
    # the markup published in a manifest is text in the browser's DOM, and never ran
    assert "<script" not in dom.lower() and "<title>fednet console</title>" in dom
    assert "&lt;script&gt;document.title='pwned'&lt;/script&gt;" in dom
    assert "&lt;img src=x onerror=\"document.title='pwned'\"&gt;" in dom

    overview = screenshot(chromium, f"{console_env.url}/ui", tmp_path, "console.png")
    query = screenshot(chromium, ask_url, tmp_path, "console-ask.png")
    assert overview.stat().st_size > 50_000 and query.stat().st_size > 20_000
