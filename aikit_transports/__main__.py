"""``python -m aikit_transports``: the same program as the ``aikit-transports`` command."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
