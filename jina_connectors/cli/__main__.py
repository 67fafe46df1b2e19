"""``python -m jina_connectors.cli``: the ``jina-connectors`` command."""

import sys

from . import main

sys.exit(main())
