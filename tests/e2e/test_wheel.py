"""The wheel, installed where the checkout cannot be imported: ``cdvm relay`` serves and
``cdvm attest verify`` verifies a genuine AMD report, from the installed files alone.

How, offline: the wheel is built from a copy of what setuptools reads (``pyproject.toml``,
``README.md`` and the three packages) with the checkout venv's setuptools (``pip wheel --no-deps
--no-build-isolation --no-index``); a fresh venv in a temporary directory gets only that wheel
(``pip install --no-index --no-deps``). Its third-party dependencies come from the checkout venv
through one ``.pth`` file listing that venv's site-packages: a ``.pth`` line only appends a
directory to ``sys.path``, the ``.pth`` files inside it (the editable install's finder among
them) are not processed, so the checkout's own packages stay out of reach. Every command runs
from a directory outside the checkout with ``PYTHONPATH`` and the like removed, and the first
test proves that what gets imported is the wheel's copy. ``nostr-relay``'s console script is
written into the new venv as ``pip install '.[relay]'`` would have written it.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from attestation.snp.vek import load_certificates
from tests.integration.conftest import free_port, stop_group, wait_until_serving

pytestmark = [pytest.mark.slow, pytest.mark.relay]

REPO = Path(__file__).resolve().parents[2]
SNP = REPO / "tests" / "vectors" / "snp"
# What setuptools reads to build the wheel ([project] readme, [tool.setuptools.packages.find]).
SOURCES = ("pyproject.toml", "README.md", "dvm", "container", "attestation")
# Dependencies of the checkout venv (not of the checkout): what the .pth line hands the new venv.
DEPENDENCY_DIRS = tuple(dict.fromkeys(sysconfig.get_path(name) for name in ("purelib", "platlib")))
STEP_TIMEOUT_S = 60


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    site_packages: Path
    cwd: Path  # outside the checkout
    env: dict[str, str]

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def cdvm(self) -> Path:
        return self.venv / "bin" / "cdvm"

    def run(self, argv: Sequence[str | Path]) -> subprocess.CompletedProcess[str]:
        """``argv`` from outside the checkout, in the scrubbed environment."""
        return subprocess.run(
            [str(a) for a in argv],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=STEP_TIMEOUT_S,
            check=False,
        )


def _checked(argv: Sequence[str | Path], cwd: Path) -> str:
    result = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env={**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, f"{argv}:\n{result.stdout[-2000:]}{result.stderr[-4000:]}"
    return result.stdout


def _isolated_env(venv: Path) -> dict[str, str]:
    scrubbed = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "CDVM_RELAY_CONFIG")
    env = {
        k: v for k, v in os.environ.items() if k not in scrubbed and not k.startswith("COVERAGE_")
    }
    checkout_bin = str(Path(sys.executable).parent)
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != checkout_bin]
    env["PATH"] = os.pathsep.join([str(venv / "bin"), *path])
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _write_console_script(venv: Path, dist: str, name: str) -> None:
    """The script pip writes for ``dist``'s console entry point ``name``, in ``venv/bin``."""
    (entry,) = (
        ep
        for ep in importlib.metadata.distribution(dist).entry_points
        if ep.group == "console_scripts" and ep.name == name
    )
    script = venv / "bin" / name
    script.write_text(
        f"#!{venv / 'bin' / 'python'}\nimport sys\nfrom {entry.module} import {entry.attr}\n"
        f"sys.exit({entry.attr}())\n",
        encoding="utf-8",
    )
    script.chmod(0o755)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    setuptools = importlib.metadata.version("setuptools")
    if int(setuptools.split(".")[0]) < 77:  # the [build-system] floor; the dev extra pins it
        pytest.fail(f"setuptools {setuptools} cannot build this pyproject: run `make setup`")
    tmp = tmp_path_factory.mktemp("wheel")
    assert not tmp.resolve().is_relative_to(REPO)
    src, wheels, venv, cwd = tmp / "src", tmp / "wheels", tmp / "venv", tmp / "cwd"
    cwd.mkdir()
    src.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(REPO / name, src / name, ignore=ignore)
        else:
            shutil.copy2(REPO / name, src / name)
    pip = [sys.executable, "-m", "pip"]
    _checked(
        [*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", src, "-w", wheels],
        tmp,
    )
    (wheel,) = wheels.glob("confidential_dvm-*.whl")

    _checked([sys.executable, "-m", "venv", "--without-pip", venv], tmp)
    python = venv / "bin" / "python"
    # The wheel goes in before the .pth exists: pip must not see the checkout's editable install.
    _checked([*pip, "--python", python, "install", "-q", "--no-index", "--no-deps", wheel], tmp)
    site_packages = Path(
        _checked(
            [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd
        ).strip()
    )
    (site_packages / "cdvm-test-dependencies.pth").write_text(
        "".join(f"{d}\n" for d in DEPENDENCY_DIRS), encoding="utf-8"
    )
    _write_console_script(venv, "nostr-relay", "nostr-relay")
    return Installed(wheel, venv, site_packages, cwd, _isolated_env(venv))


_WHERE = """
import importlib.metadata, json, sys
import attestation, container, dvm, dvm.cli
dist = importlib.metadata.distribution("confidential-dvm")
print(json.dumps({
    "files": [m.__file__ for m in (attestation, container, dvm, dvm.cli)],
    "path": sys.path,
    "direct_url": json.loads(dist.read_text("direct_url.json") or "{}"),
    "dist_files": str(dist.locate_file("dvm/__init__.py")),
}))
"""


def test_the_wheel_not_the_checkout_is_imported(installed: Installed) -> None:
    result = installed.run([installed.python, "-c", _WHERE])
    assert result.returncode == 0, result.stderr
    where = json.loads(result.stdout)
    site = installed.site_packages.resolve()
    for file in [*where["files"], where["dist_files"]]:
        assert Path(file).resolve().is_relative_to(site), file
    # pip records the wheel it installed from; an editable install records the checkout.
    assert where["direct_url"]["url"].endswith("/" + installed.wheel.name)
    assert "dir_info" not in where["direct_url"]
    # Nothing of the checkout on sys.path but the dependency directories the .pth lists.
    inside = [p for p in where["path"] if p and Path(p).resolve().is_relative_to(REPO)]
    assert set(inside) <= set(DEPENDENCY_DIRS), inside
    # And the console script is the new venv's.
    assert installed.cdvm.read_text(encoding="utf-8").startswith(f"#!{installed.python}\n")


_ROUND_TRIP = """
import asyncio, json, secrets, sys, time
from dvm.nostr.event import UnsignedEvent
from dvm.nostr.filters import Filter
from dvm.nostr.keys import SecretKey
from dvm.relay import RelayPool

async def main(url):
    key = SecretKey.generate(secrets.token_bytes)
    event = UnsignedEvent(key.public_key.hex(), int(time.time()), 1, (), "from the wheel").sign(
        key, aux_rand=secrets.token_bytes(32)
    )
    async with RelayPool([url]) as pool:
        accepted = (await pool.publish(event)).accepted_by
        sub = await pool.subscribe([Filter(authors=(key.public_key.hex(),))])
        async with asyncio.timeout(20):
            got = await anext(sub)
    return {"accepted": list(accepted), "sent": event.to_dict(), "got": got.to_dict()}

print(json.dumps(asyncio.run(main(sys.argv[1]))))
"""


@pytest.fixture
def relay(installed: Installed) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    port = free_port()
    data, log = installed.cwd / f"relay-{port}", installed.cwd / f"relay-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [installed.cdvm, "relay", "--port", str(port), "--data", data],
            cwd=installed.cwd,
            env=installed.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while True:  # fail at once, with its log, when cdvm relay exits instead of serving
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:]
                pytest.fail(f"cdvm relay exited with code {proc.returncode}:\n{tail}")
            try:
                wait_until_serving(port, timeout_s=0.5)
                break
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise
        yield f"ws://127.0.0.1:{port}", proc, data
    finally:
        stop_group(proc, sig=signal.SIGKILL, grace_s=1)


def test_installed_relay_stores_and_serves_a_signed_event(
    installed: Installed, relay: tuple[str, subprocess.Popen[bytes], Path]
) -> None:
    url, proc, data = relay
    # The template came out of the wheel (package data) and was rendered into the data dir.
    assert (data / "nostr-relay.yaml").stat().st_mode & 0o777 == 0o600
    assert (installed.site_packages / "dvm/cli/relay_config/nostr-relay.dev.yaml").is_file()
    result = installed.run([installed.python, "-c", _ROUND_TRIP, url])
    assert result.returncode == 0, result.stderr[-4000:]
    out = json.loads(result.stdout)
    assert out["accepted"] == [url]
    assert out["got"] == out["sent"]
    proc.send_signal(signal.SIGTERM)  # forwarded to nostr-relay; its exit code comes back
    assert proc.wait(timeout=15) == 0


def test_installed_attest_verify_accepts_a_genuine_report(installed: Installed) -> None:
    manifest = json.loads((SNP / "manifest.json").read_text(encoding="utf-8"))
    (v,) = (v for v in manifest["vectors"] if v["name"] == "virtee-milan-v2")
    vek = load_certificates((SNP / v["vek_file"]).read_bytes())[0]
    now = int((vek.not_valid_before_utc + dt.timedelta(days=1)).timestamp())
    # Only the VCEK is given: the ASK and ARK are the wheel's packaged AMD roots.
    argv = ["attest", "verify", SNP / v["report_file"], "--cert", SNP / v["vek_file"]]
    result = installed.run([installed.cdvm, *argv, "--now", str(now), "--json"])
    assert result.returncode == 0, result.stdout + result.stderr
    out = json.loads(result.stdout)
    assert (out["verified"], out["failures"]) == (True, [])
    assert (out["product"], out["signer"]) == (v["product"], v["signer"])
    assert out["measurement"] == v["measurement"]
