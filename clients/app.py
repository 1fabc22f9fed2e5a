"""fednet ClientApp: trains LoRA on this silo's private data; only adapters leave."""

from fednet.federation.apps import make_client_app

app = make_client_app()
