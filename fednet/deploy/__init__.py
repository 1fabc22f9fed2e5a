"""Real deployment: the ``flower-server`` and ``flower-client`` commands.

They run fednet on Flower's Deployment Engine (SuperLink and SuperNodes) with
TLS, per-client node authentication, checkpoint/resume and dropouts; see
``docs/deployment.md``. Submodules are imported on use, so importing this
package is cheap:

- :mod:`fednet.deploy.server_cmd`, :mod:`fednet.deploy.client_cmd`: the commands;
- :mod:`fednet.deploy.certs`: the CA, server certificate and client keys;
- :mod:`fednet.deploy.flower`: Flower command lines and connection files;
- :mod:`fednet.deploy.net`: addresses, ports and a TLS probe;
- :mod:`fednet.deploy.procs`: child processes that never outlive their parent;
- :mod:`fednet.deploy.startup`: per-message ClientApp start-up measurement.
"""

__all__: list[str] = []
