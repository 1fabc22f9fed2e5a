"""No secret ships with the project: no default token, key and hub directories ignored."""

from __future__ import annotations

import re
import subprocess

from fednet.config import PROJECT_ROOT


def test_the_makefile_bakes_in_no_token() -> None:
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    assert "dev-token" not in makefile
    assert not re.search(r"HUB_TOKEN\s*\?=", makefile)
    assert "hub token create" in makefile


def test_keys_and_hub_directories_are_ignored_but_the_code_is_not() -> None:
    paths = ["keys/spam-0.key", "hub/hub.db", "fednet/hub/trust.py", "tests/hub/conftest.py"]
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", *paths],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.stdout.split() == ["keys/spam-0.key", "hub/hub.db"]
