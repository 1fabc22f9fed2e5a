"""The network console: a web page on the hub at ``/ui`` (server-rendered, no JavaScript).

It shows the hub's adapters with their manifests, owners, key fingerprints and
verification status against the reader's trust store; ε spent per client
against a budget; peers up or down with their latency; a query box that
routes a query and shows the decision and provenance; and the plots of the
latest benchmark report. It sits above :mod:`fednet.inference` in the layers
and is mounted onto the hub's app by ``fednet hub serve``
(:func:`mount_console`); the hub never imports it.
"""

from fednet.console.app import SECURITY_HEADERS, Console, console_mount, mount_console
from fednet.console.reports import BenchReport, latest_report
from fednet.console.state import (
    BAD_SIGNATURE,
    UNPINNED,
    UNSIGNED,
    VERIFIED,
    AdapterView,
    BudgetView,
    PeerView,
    adapter_views,
    budget_views,
    peer_views,
    verify_status,
)

__all__ = [
    "BAD_SIGNATURE",
    "SECURITY_HEADERS",
    "UNPINNED",
    "UNSIGNED",
    "VERIFIED",
    "AdapterView",
    "BenchReport",
    "BudgetView",
    "Console",
    "console_mount",
    "PeerView",
    "adapter_views",
    "budget_views",
    "latest_report",
    "mount_console",
    "peer_views",
    "verify_status",
]
