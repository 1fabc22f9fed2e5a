# PYTHON_ARGCOMPLETE_OK
"""``python -m fednet.cli``: the ``fednet`` command."""

import sys

from fednet.cli import main

sys.exit(main())
