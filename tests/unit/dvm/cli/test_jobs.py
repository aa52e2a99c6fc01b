"""dvm.cli.jobs: where ``cdvm submit`` takes its input from, and the keep-readable flag.

In process, through :func:`dvm.cli.main.main`: the job itself is replaced by a stub that records
what it was given and stops with a client error (exit 1), so nothing touches a relay. The
end-to-end runs through real relays, a real node and a real container are in
``tests/e2e/test_cli_jobs.py`` and ``tests/e2e/test_result_secrecy.py``.
"""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from attestation.snp.crl import CrlMode
from dvm.cli import jobs
from dvm.cli.main import main
from dvm.client import ClientError, JobOptions
from dvm.nostr.keys import SecretKey

PROVIDER = SecretKey(b"\x02" * 32).public_key.hex()
BASE = ["submit", "--provider", PROVIDER, "--relay", "ws://127.0.0.1:1", "--model", "m"]


class _Stdin:
    """A stand-in for ``sys.stdin``: its bytes, and whether it claims to be a terminal."""

    def __init__(self, data: bytes, *, tty: bool) -> None:
        self.buffer = io.BytesIO(data)
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[JobOptions, str]]:
    calls: list[tuple[JobOptions, str]] = []

    async def fake_submit(options: JobOptions, text: str, **_: object) -> None:
        calls.append((options, text))
        raise ClientError("stub: not sent")

    monkeypatch.setattr(jobs, "submit", fake_submit)
    return calls


def _run(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    code = exited.value.code
    assert isinstance(code, int)
    return code


def _stdin(monkeypatch: pytest.MonkeyPatch, data: bytes, *, tty: bool) -> None:
    monkeypatch.setattr("sys.stdin", _Stdin(data, tty=tty))


def test_standard_input_is_the_default_when_it_is_not_a_terminal(
    sent: list[tuple[JobOptions, str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _stdin(monkeypatch, b"the prompt\nsecond line\n", tty=False)
    assert _run(BASE) == 1  # the stub's client error
    [(options, text)] = sent
    assert text == "the prompt\nsecond line\n"  # verbatim
    assert options.result_to_requester is False  # the default: the result goes to S
    assert "warning" not in capsys.readouterr().err


def test_input_dash_reads_standard_input_even_from_a_terminal(
    sent: list[tuple[JobOptions, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _stdin(monkeypatch, "typed Ωmega".encode(), tty=True)
    assert _run([*BASE, "--input", "-"]) == 1
    assert [text for _, text in sent] == ["typed Ωmega"]


def test_input_file_is_read_verbatim(
    sent: list[tuple[JobOptions, str]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _stdin(monkeypatch, b"not this", tty=False)
    path = tmp_path / "prompt.txt"
    path.write_bytes(b"from the file\n")
    assert _run([*BASE, "--input", str(path)]) == 1
    assert [text for _, text in sent] == ["from the file\n"]


def test_a_terminal_and_no_input_option_is_a_usage_error_saying_how(
    sent: list[tuple[JobOptions, str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _stdin(monkeypatch, b"", tty=True)
    assert _run(BASE) == 2
    err = capsys.readouterr().err
    assert "no input" in err
    assert "echo TEXT | cdvm submit" in err
    assert "--input FILE" in err
    assert sent == []


def test_prompt_still_works_and_warns_that_others_can_read_it(
    sent: list[tuple[JobOptions, str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _stdin(monkeypatch, b"not this", tty=False)
    assert _run([*BASE, "--prompt", "zq canary", "--json"]) == 1
    assert [text for _, text in sent] == ["zq canary"]
    err = capsys.readouterr().err
    assert "warning: --prompt" in err  # even with --json: it is about the user's data
    assert "/proc/PID/cmdline" in err
    assert "zq canary" not in err


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"", "the input is empty"), (b"\xff\xfe secret", "standard input is not UTF-8 text")],
)
def test_unusable_standard_input_is_a_usage_error_that_quotes_nothing(
    data: bytes,
    message: str,
    sent: list[tuple[JobOptions, str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _stdin(monkeypatch, data, tty=False)
    assert _run(BASE) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "secret" not in err
    assert "0xff" not in err
    assert sent == []


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "No such file"), (b"\xff secret", "is not UTF-8 text")],
)
def test_unusable_input_file_is_a_usage_error_that_quotes_nothing(
    content: bytes | None,
    message: str,
    sent: list[tuple[JobOptions, str]],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    path = tmp_path / "prompt.txt"
    if content is not None:
        path.write_bytes(content)
    assert _run([*BASE, "--input", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "secret" not in err
    assert sent == []


def test_prompt_and_input_together_are_refused(
    sent: list[tuple[JobOptions, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run([*BASE, "--prompt", "x", "--input", "-"]) == 2
    assert "not allowed with" in capsys.readouterr().err
    assert sent == []


def test_keep_result_readable_asks_for_the_result_to_go_to_u(
    sent: list[tuple[JobOptions, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _stdin(monkeypatch, b"x", tty=False)
    assert _run([*BASE, "--keep-result-readable"]) == 1
    [(options, _)] = sent
    assert options.result_to_requester is True
    assert options.fresh_session is True  # the channel still uses a fresh, wiped S


def _minted_crl(path: Path) -> Path:
    """TEST ONLY: a DER CRL signed by a throwaway key (the CLI only reads it; the verifier,
    tested in tests/unit/dvm/client/test_verify_revocation.py, checks it against the ARK)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ARK-Genoa")]))
        .last_update(now)
        .next_update(now + dt.timedelta(days=7))
        .sign(key, hashes.SHA384())
    )
    path.write_bytes(crl.public_bytes(serialization.Encoding.DER))
    return path


def test_revocation_is_left_to_the_client_default_without_flags(
    sent: list[tuple[JobOptions, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _stdin(monkeypatch, b"x", tty=False)
    assert _run([*BASE, "--tee", "sev-snp"]) == 1
    [(options, _)] = sent
    assert options.crl is None  # dvm.client.verify.default_crl_policy: required, fetched


def test_crl_files_are_required_and_nothing_is_fetched(
    sent: list[tuple[JobOptions, str]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _stdin(monkeypatch, b"x", tty=False)
    first, second = _minted_crl(tmp_path / "a.crl"), _minted_crl(tmp_path / "b.crl")
    assert _run([*BASE, "--crl", str(first), "--crl", str(second)]) == 1
    [(options, _)] = sent
    assert options.crl is not None
    assert options.crl.mode is CrlMode.REQUIRE
    assert options.crl.fetch is None
    assert options.crl.crls == (first.read_bytes(), second.read_bytes())


def test_crl_accept_unavailable_fetches_and_accepts_a_missing_crl(
    sent: list[tuple[JobOptions, str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def kds(url: str) -> bytes:
        raise AssertionError(f"the CLI must not fetch {url} itself")

    monkeypatch.setattr(jobs, "default_crl_fetcher", lambda: kds)
    _stdin(monkeypatch, b"x", tty=False)
    assert _run([*BASE, "--crl-accept-unavailable"]) == 1
    [(options, _)] = sent
    assert options.crl is not None
    assert options.crl.mode is CrlMode.ACCEPT_UNAVAILABLE
    assert options.crl.fetch is kds
    assert "WARNING: --crl-accept-unavailable" in capsys.readouterr().err


@pytest.mark.parametrize("content", [None, b"not a CRL"], ids=["missing", "garbage"])
def test_an_unusable_crl_file_is_a_usage_error(
    sent: list[tuple[JobOptions, str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    content: bytes | None,
) -> None:
    path = tmp_path / "amd.crl"
    if content is not None:
        path.write_bytes(content)
    _stdin(monkeypatch, b"x", tty=False)
    assert _run([*BASE, "--crl", str(path)]) == 2
    assert "CRL" in capsys.readouterr().err
    assert sent == []
