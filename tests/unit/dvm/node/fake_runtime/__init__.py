"""The fake job container's runtime root (:data:`FAKE_RUNTIME`), for the local launcher's tests.

The root holds what a launcher stages and measures (``container/...``): the fake's own
``container/__main__.py`` (this directory) and the real launch contract's status module,
``container/launch/status.py``, copied from the installed ``container`` package. The fake
imports the contract instead of restating it; the status module is stdlib-only so the two
files run alone in the sandbox. Built once per test process in a temporary directory (removed
at exit), because the contract's file lives outside this directory.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from container.launch import status

__all__ = ["FAKE_RUNTIME", "build_fake_runtime"]

_HERE = Path(__file__).resolve().parent
_FILES = {
    "container/__main__.py": _HERE / "container" / "__main__.py",
    "container/launch/status.py": Path(status.__file__).resolve(),
}


def build_fake_runtime(dest: Path) -> Path:
    """Write the fake runtime's files under ``dest`` (made if needed); returns ``dest``."""
    for relative, source in _FILES.items():
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return dest


FAKE_RUNTIME = build_fake_runtime(Path(tempfile.mkdtemp(prefix="cdvm-fake-runtime-")))
atexit.register(shutil.rmtree, FAKE_RUNTIME, ignore_errors=True)
