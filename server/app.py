"""fednet ServerApp: reads the run config and runs the federation."""

from fednet.federation.apps import make_server_app

app = make_server_app()
