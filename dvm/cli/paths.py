"""Path arguments of ``cdvm``: resolved against the caller's working directory at parse time.

Every path flag of every ``cdvm`` command is parsed with ``type=resolved`` (or
``resolved_or_stdin`` where ``-`` means standard input), so the commands, their child processes
(the embedded relay runs in its data directory) and their error messages all see the same
absolute path: ``cdvm relay --data ./data/relay`` means ``$PWD/data/relay`` wherever the relay
is then started (issue 13). ``~`` is expanded; symlinks are kept (``absolute``, not
``resolve``), so an error names the path the user gave, made absolute.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["STDIN", "resolved", "resolved_or_stdin"]

#: The argument that means standard input for ``--input``.
STDIN = "-"


def resolved(path: str) -> Path:
    """``path`` with ``~`` expanded, made absolute against the current working directory."""
    return Path(path).expanduser().absolute()


def resolved_or_stdin(path: str) -> Path | str:
    """:data:`STDIN` unchanged, anything else :func:`resolved`."""
    return STDIN if path == STDIN else resolved(path)
