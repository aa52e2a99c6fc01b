"""Fixtures that run real ``nostr-relay`` processes on free 127.0.0.1 ports.

Each relay runs in its own process group (gunicorn master + worker), so teardown and the
"kill" of the restart test reach both processes without touching anything else.

``profile=`` ("strfry", "khatru" or "auth") makes the relay behave like a production relay
(``tests/relay_profiles.py``, docs/relay.md "Relay profiles"): its hooks are merged into the
rendered YAML and the relay process gets this checkout on its ``PYTHONPATH`` to import them.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from dvm.cli.embedded_relay import RelaySettings, relay_command, write_config
from tests.relay_profiles import PROFILES, apply_profile

START_TIMEOUT_S = 20.0
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_serving(port: int, *, timeout_s: float = START_TIMEOUT_S) -> None:
    """Poll the NIP-11 endpoint until the relay's worker answers (not just the socket)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/", headers={"Accept": "application/nostr+json"})
            if conn.getresponse().status == 200:
                conn.close()
                return
            conn.close()
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"relay on port {port} did not start within {timeout_s} s")
        time.sleep(0.05)


def stop_group(process: subprocess.Popen[bytes], *, sig: int, grace_s: float) -> None:
    """Signal the process group we started, then SIGKILL it if it lingers."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, sig)
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
    except ProcessLookupError:
        process.wait(timeout=5)
    # The worker may outlive the master by a moment; make sure the group is gone.
    for _ in range(100):
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)


@dataclass
class RelayProcess:
    """A real nostr-relay; ``kill()`` + ``start()`` restarts it on the same port and data."""

    settings: RelaySettings
    authorised: tuple[str, ...] = ()
    profile: str | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return self.settings.url

    def _run_admin(self, config: Path, *args: str) -> None:
        subprocess.run(
            relay_command(config, *args),
            cwd=self.settings.data_dir,
            check=True,
            capture_output=True,
            timeout=30,
            env=self._env(),
        )

    def _env(self) -> dict[str, str]:
        paths = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
        return dict(os.environ, PYTHONPATH=os.pathsep.join(paths))

    def _write_config(self) -> Path:
        config = write_config(self.settings)
        if self.profile is not None:
            document = apply_profile(yaml.safe_load(config.read_text()), self.profile)
            config.write_text(yaml.safe_dump(document, sort_keys=False))
        return config

    def start(self) -> None:
        config = self._write_config()
        if self.authorised or self.profile is not None:
            # nostr-relay creates its tables itself only for its own storage class.
            self._run_admin(config, "alembic", "upgrade", "head")
            for pubkey in self.authorised:
                self._run_admin(config, "role", "set", "-p", pubkey, "-r", "rw")
        log = (self.settings.data_dir / "relay.log").open("ab")
        self.process = subprocess.Popen(
            relay_command(config, "serve"),
            cwd=self.settings.data_dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=self._env(),
        )
        log.close()
        try:
            wait_until_serving(self.settings.port)
        except TimeoutError:
            self.stop()
            raise

    def kill(self) -> None:
        if self.process is not None:
            stop_group(self.process, sig=signal.SIGKILL, grace_s=5)

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process, sig=signal.SIGTERM, grace_s=3)

    def restart(self) -> None:
        self.kill()
        self.start()


RelayFactory = Callable[..., RelayProcess]


@pytest.fixture
def relay_factory(tmp_path: Path) -> Iterator[RelayFactory]:
    """``make(max_event_size=..., authorised=(pubkey,...), profile=None)`` -> a started relay
    (``start=False``: not started yet; ``relay.start()`` later).

    ``authorised`` non-empty turns NIP-42 on: saving needs role ``w`` and querying role ``r``,
    both granted to those pubkeys only. ``profile`` is one of ``tests.relay_profiles.PROFILES``.
    """
    started: list[RelayProcess] = []

    def make(
        *,
        max_event_size: int = 131072,
        authorised: tuple[str, ...] = (),
        profile: str | None = None,
        start: bool = True,
    ) -> RelayProcess:
        if profile is not None and profile not in PROFILES:
            raise ValueError(f"unknown relay profile {profile!r}")
        port = free_port()
        url = f"ws://127.0.0.1:{port}"
        settings = RelaySettings(
            host="127.0.0.1",
            port=port,
            data_dir=tmp_path / f"relay-{port}",
            max_event_size=max_event_size,
            auth_relay_urls=(url, url + "/") if authorised or profile == "auth" else (),
            log_level="WARNING",
        )
        relay = RelayProcess(settings, authorised, profile)
        started.append(relay)
        if start:  # start=False: the test starts it later (a relay that comes up late)
            relay.start()
        return relay

    yield make
    for relay in started:
        relay.stop()


@pytest.fixture
def relay(relay_factory: RelayFactory) -> RelayProcess:
    return relay_factory()
