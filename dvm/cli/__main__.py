"""``python -m dvm.cli``: the ``cdvm`` command."""

from __future__ import annotations

from .main import main

__all__: list[str] = []

if __name__ == "__main__":
    main()
