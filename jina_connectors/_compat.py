"""Old import paths kept for one release after the package was arranged in rooms.

An old module that moved whole becomes an alias of its new home (``moved``), so
``import jina_connectors.sink`` and monkeypatching through it still reach the real module;
an old module whose names went to several homes re-exports them (``warn_moved``).
"""

from __future__ import annotations

import importlib
import sys
import warnings
from types import ModuleType


def warn_moved(old: str, new: str) -> None:
    """Warn once per import that ``old`` is deprecated in favour of ``new``."""
    warnings.warn(
        f"{old} moved to {new}; import from there ({old} goes in the next release)",
        DeprecationWarning,
        stacklevel=3,
    )


def moved(old: str, new: str) -> ModuleType:
    """Make module ``old`` an alias of module ``new`` (call it from ``old``'s body)."""
    warn_moved(old, new)
    module = importlib.import_module(new)
    sys.modules[old] = module
    return module
