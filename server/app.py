"""fednet ServerApp: reads the run config and runs the federation.

Its progress lines go to stderr, which Flower forwards to ``flwr log``.
"""

from fednet.federation.apps import make_server_app
from fednet.logs import setup_logging

setup_logging()
app = make_server_app()
