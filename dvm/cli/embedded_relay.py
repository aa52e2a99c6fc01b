"""The embedded development relay: ``nostr-relay`` configured from package data.

nostr-relay: https://pypi.org/project/nostr-relay/ (1.14)

``render_config`` fills the template ``dvm/cli/relay_config/nostr-relay.dev.yaml``
(``string.Template`` placeholders) with a host, port, data directory and options;
``write_config`` writes it into the data directory as ``nostr-relay.yaml``; ``run_foreground``
(behind ``cdvm relay``) runs ``nostr-relay -c <that file> serve`` as a child process until it
exits or we get SIGINT/SIGTERM (forwarded to the child, so no gunicorn process is orphaned) and
returns its exit code.

The template ships inside the package (``dvm/cli/relay_config/``, package data), so an installed
wheel runs ``cdvm relay`` as a checkout does; ``CDVM_RELAY_CONFIG`` pointing at another template
is checked first.

Binding policy: the development relay has authentication off and accepts anything signed, so
``run_foreground`` refuses a non-loopback host unless ``allow_remote=True`` is passed on
purpose (the CLI does not expose it): a public relay should be a production relay with its own
configuration.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template
from types import FrameType

__all__ = [
    "DEFAULT_MAX_EVENT_SIZE",
    "RelaySettings",
    "find_template",
    "is_loopback_host",
    "relay_command",
    "render_config",
    "run_foreground",
    "write_config",
]

_log = logging.getLogger(__name__)

# nostr-relay counts characters of content; a 128 KiB budget carries ~64-128 KiB gift wraps.
DEFAULT_MAX_EVENT_SIZE = 131072
CONFIG_FILE_NAME = "nostr-relay.yaml"
DATABASE_FILE_NAME = "nostr-relay.sqlite3"
_TEMPLATE_NAME = "nostr-relay.dev.yaml"


@dataclass(frozen=True, slots=True)
class RelaySettings:
    """Everything the template needs. ``auth_relay_urls`` non-empty turns NIP-42 on."""

    host: str
    port: int
    data_dir: Path
    max_event_size: int = DEFAULT_MAX_EVENT_SIZE
    auth_relay_urls: tuple[str, ...] = ()
    auth_save_roles: str = "w"
    auth_query_roles: str = "r"
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port {self.port} out of range")
        if self.max_event_size < 1:
            raise ValueError("max_event_size must be positive")
        if self.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError(f"unknown log level {self.log_level!r}")

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"


def find_template() -> Path:
    """``$CDVM_RELAY_CONFIG`` if set, else the packaged ``relay_config/nostr-relay.dev.yaml``."""
    override = os.environ.get("CDVM_RELAY_CONFIG")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent / "relay_config" / _TEMPLATE_NAME


def _yaml_list(items: Sequence[str]) -> str:
    # JSON strings are valid YAML flow scalars, and these are URLs we built ourselves.
    return (
        "["
        + ", ".join('"' + i.replace("\\", "\\\\").replace('"', '\\"') + '"' for i in items)
        + "]"
    )


def render_config(settings: RelaySettings, *, template: Path | None = None) -> str:
    """The YAML configuration for ``settings``."""
    text = (template or find_template()).read_text(encoding="utf-8")
    auth = bool(settings.auth_relay_urls)
    return Template(text).substitute(
        host=settings.host,
        port=settings.port,
        database_path=str((settings.data_dir / DATABASE_FILE_NAME).resolve()),
        max_event_size=settings.max_event_size,
        auth_enabled="true" if auth else "false",
        auth_relay_urls=_yaml_list(settings.auth_relay_urls),
        auth_save_roles=settings.auth_save_roles if auth else "a",
        auth_query_roles=settings.auth_query_roles if auth else "a",
        log_level=settings.log_level,
    )


def write_config(settings: RelaySettings, *, template: Path | None = None) -> Path:
    """Create the data directory (0700) and write the rendered config (0600) into it."""
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = settings.data_dir / CONFIG_FILE_NAME
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(render_config(settings, template=template))
    return path


def relay_command(config_path: Path, *args: str) -> list[str]:
    """``nostr-relay -c CONFIG ARGS...`` using the script installed next to this Python."""
    script = Path(sys.executable).with_name("nostr-relay")
    if not script.exists():
        found = shutil.which("nostr-relay")
        if found is None:
            raise FileNotFoundError("nostr-relay is not installed (pip install '.[relay]')")
        script = Path(found)
    return [str(script), "-c", str(config_path), *args]


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def _forward_signals(child: subprocess.Popen[bytes]) -> Iterator[None]:
    def forward(signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_foreground(
    *, port: int, data_dir: Path, host: str = "127.0.0.1", allow_remote: bool = False
) -> int:
    """Run the development relay until it exits; its exit code (128+N if killed by signal N).

    Returns 2 without starting anything for a non-loopback ``host`` unless ``allow_remote``.
    """
    if not allow_remote and not is_loopback_host(host):
        _log.error("refusing to bind the development relay to non-loopback host %s", host)
        sys.stderr.write(
            f"cdvm relay: refusing to bind to {host}: the development relay is loopback-only\n"
        )
        return 2
    # Absolute before anything: the child runs with cwd=data_dir, where a relative path would
    # name another directory (issue 13: "No such file or directory: data/relay/...").
    data_dir = data_dir.expanduser().absolute()
    settings = RelaySettings(host=host, port=port, data_dir=data_dir)
    config_path = write_config(settings)
    command = relay_command(config_path, "serve")
    _log.info("starting nostr-relay on %s (data %s)", settings.url, data_dir)
    # Argument list, no shell: the only inputs are our own paths.
    with subprocess.Popen(command, cwd=data_dir) as child, _forward_signals(child):  # noqa: S603
        try:
            code = child.wait()
        except KeyboardInterrupt:
            child.terminate()
            code = child.wait()
    return 128 - code if code < 0 else code
