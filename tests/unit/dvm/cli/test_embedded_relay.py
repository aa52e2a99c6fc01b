from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml

from dvm.cli.embedded_relay import (
    RelaySettings,
    find_template,
    is_loopback_host,
    render_config,
    run_foreground,
    write_config,
)


def test_template_is_package_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CDVM_RELAY_CONFIG", raising=False)
    repo = Path(__file__).resolve().parents[4]
    assert find_template() == repo / "dvm" / "cli" / "relay_config" / "nostr-relay.dev.yaml"
    # Shipped in the wheel (tests/e2e/test_wheel.py runs it from one).
    pyproject = tomllib.loads((repo / "pyproject.toml").read_text(encoding="utf-8"))
    package_data = pyproject["tool"]["setuptools"]["package-data"]["dvm.cli"]
    assert "relay_config/*.yaml" in package_data


def test_rendered_dev_config(tmp_path: Path) -> None:
    conf = yaml.safe_load(
        render_config(RelaySettings(host="127.0.0.1", port=7447, data_dir=tmp_path))
    )
    assert conf["gunicorn"]["bind"] == "127.0.0.1:7447"
    assert conf["max_event_size"] >= 131072
    assert (
        conf["storage"]["sqlalchemy.url"]
        == f"sqlite+aiosqlite:///{tmp_path.resolve()}/nostr-relay.sqlite3"
    )
    assert conf["authentication"]["enabled"] is False
    assert conf["authentication"]["actions"] == {"save": "a", "query": "a"}
    assert "valid_urls" not in conf["authentication"]


def test_rendered_auth_config(tmp_path: Path) -> None:
    settings = RelaySettings(
        host="127.0.0.1", port=1, data_dir=tmp_path, auth_relay_urls=("ws://127.0.0.1:1",)
    )
    path = write_config(settings)
    assert path.stat().st_mode & 0o777 == 0o600
    conf = yaml.safe_load(path.read_text())
    assert conf["authentication"] == {
        "enabled": True,
        "relay_urls": ["ws://127.0.0.1:1"],
        "actions": {"save": "w", "query": "r"},
    }


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("example.org", False),
    ],
)
def test_loopback_policy(host: str, ok: bool) -> None:
    assert is_loopback_host(host) is ok


def test_public_host_is_refused_without_starting(tmp_path: Path) -> None:
    assert run_foreground(port=7447, data_dir=tmp_path / "d", host="0.0.0.0") == 2
    assert not (tmp_path / "d").exists()
