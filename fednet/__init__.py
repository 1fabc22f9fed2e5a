"""fednet: federated LoRA co-fine-tuning and joint inference over a network of models.

The package is organised by layer: :mod:`fednet.data`, :mod:`fednet.models`,
:mod:`fednet.lora`, :mod:`fednet.privacy`, :mod:`fednet.strategies`,
:mod:`fednet.hub`, :mod:`fednet.routing` and :mod:`fednet.inference`. Importing
``fednet`` itself is cheap; heavy dependencies load with the subpackage that
needs them.
"""

import logging

__version__ = "0.1.0"
__all__ = ["__version__"]

logging.getLogger(__name__).addHandler(logging.NullHandler())
