"""attestation.snp.validate: every policy check, the TOML loader, and warnings()."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attestation.errors import AttestationError, ParseError, PolicyViolation
from attestation.snp.abi import (
    FirmwareVersion,
    GuestPolicy,
    KeyInfo,
    PlatformInfo,
    Product,
    Report,
    SigningKey,
    TcbVersion,
)
from attestation.snp.validate import (
    DEFAULT_POLICY,
    Policy,
    TcbFloor,
    load_policy,
    validate,
    warnings,
)
from attestation.snp.vek import VekExtensions
from attestation.snp.verify import VerifiedReport

MakeReport = Callable[..., Report]
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def verified(
    report: Report, *, signer: SigningKey = SigningKey.VCEK, csp_id: str | None = None
) -> VerifiedReport:
    # validate() is policy over an already verified report; its checks are unit-tested here on
    # hand-made VerifiedReports (the vector tests run the whole verify -> validate path).
    ext = VekExtensions(0, "Milan-B0", report.reported_tcb.components(), None, csp_id)
    return VerifiedReport(report, report.product or Product.MILAN, signer, ext, "00" * 32, NOW)


def failures(v: VerifiedReport, policy: Policy) -> list[tuple[str, str, str]]:
    with pytest.raises(PolicyViolation) as info:
        validate(v, policy)
    return [(f.field, f.seen, f.wanted) for f in info.value.failures]


def test_default_policy_accepts_a_plain_report(make_report: MakeReport) -> None:
    validate(verified(make_report()), DEFAULT_POLICY)
    validate(verified(make_report()))


def test_every_failure_is_listed_at_once(make_report: MakeReport) -> None:
    report = make_report(policy=GuestPolicy(debug=True, migrate_ma=True), vmpl=2)
    got = failures(verified(report), Policy(max_vmpl=0))
    assert [f[0] for f in got] == ["policy.debug", "policy.migrate_ma", "vmpl"]
    assert got[2] == ("vmpl", "2", "<= 0")


def test_debug_and_migration_may_be_allowed(make_report: MakeReport) -> None:
    report = make_report(policy=GuestPolicy(debug=True, migrate_ma=True))
    validate(verified(report), Policy(allow_debug=True, allow_migrate_ma=True))


def test_smt(make_report: MakeReport) -> None:
    on = verified(make_report(platform_info=PlatformInfo(smt_enabled=True)))
    off = verified(make_report(platform_info=PlatformInfo(smt_enabled=False)))
    assert failures(on, Policy(allow_smt=False)) == [
        ("platform_info.smt_enabled", "1", "0 (SMT off on the host)")
    ]
    validate(off, Policy(allow_smt=False))
    validate(on, Policy(allow_smt=True))


def test_signers_and_csp_ids(make_report: MakeReport) -> None:
    vlek = verified(
        make_report(key_info=KeyInfo(SigningKey.VLEK)), signer=SigningKey.VLEK, csp_id="CN=aws"
    )
    vcek = verified(make_report())
    assert failures(vlek, Policy(signers=frozenset({SigningKey.VCEK}))) == [
        ("key_info.signing_key", "VLEK", "VCEK")
    ]
    assert failures(vlek, Policy(signers=frozenset())) == [
        ("key_info.signing_key", "VLEK", "nothing")
    ]
    assert failures(vlek, Policy(csp_ids=frozenset({"CN=gcp", "CN=azure"}))) == [
        ("vlek.csp_id", "CN=aws", "CN=azure or CN=gcp")
    ]
    validate(vlek, Policy(csp_ids=frozenset({"CN=aws"})))
    validate(vcek, Policy(csp_ids=frozenset({"CN=aws"})))  # cspID constrains VLEKs only


def test_vmpl_exact(make_report: MakeReport) -> None:
    assert failures(verified(make_report(vmpl=1)), Policy(vmpl=0)) == [("vmpl", "1", "0")]
    validate(verified(make_report(vmpl=1)), Policy(vmpl=1, max_vmpl=1))


@pytest.mark.parametrize("which", ["reported", "current", "committed", "launch"])
def test_tcb_floors(make_report: MakeReport, which: str) -> None:
    low = TcbVersion(bl=2, tee=0, snp=8, ucode=100)
    report = make_report(**{f"{which}_tcb": low})
    floor = TcbFloor(bl=3, tee=0, snp=8, ucode=115)
    got = failures(verified(report), Policy(min_tcb={which: floor}))
    assert got == [(f"{which}_tcb.bl", "2", ">= 3"), (f"{which}_tcb.ucode", "100", ">= 115")]
    validate(verified(report), Policy(min_tcb={which: TcbFloor(bl=2)}))


def test_fmc_floor_on_milan_cannot_hold(make_report: MakeReport) -> None:
    got = failures(verified(make_report()), Policy(min_tcb={"reported": TcbFloor(fmc=0)}))
    assert got == [("reported_tcb.fmc", "None", ">= 0")]


def test_unknown_tcb_name() -> None:
    with pytest.raises(ParseError, match="unknown TCB"):
        Policy(min_tcb={"latest": TcbFloor()})


def test_minimum_firmware(make_report: MakeReport) -> None:
    v = verified(make_report(current_version=FirmwareVersion(1, 55, 29)))
    assert failures(v, Policy(min_firmware=FirmwareVersion(1, 55, 30))) == [
        ("current_version", "1.55.29", ">= 1.55.30")
    ]
    validate(v, Policy(min_firmware=FirmwareVersion(1, 55, 29)))
    validate(v, Policy(min_firmware=FirmwareVersion(1, 9, 99)))


def test_measurement_host_data_report_data_products(make_report: MakeReport) -> None:
    report = make_report()
    v = verified(report)
    other48, other32, other64 = bytes(48), bytes(32), bytes(64)
    got = failures(
        v,
        Policy(
            measurements=frozenset({other48}),
            host_data=other32,
            report_data=other64,
            products=frozenset({Product.GENOA}),
        ),
    )
    assert got == [
        ("measurement", report.measurement.hex(), other48.hex()),
        ("host_data", report.host_data.hex(), other32.hex()),
        ("report_data", report.report_data.hex(), other64.hex()),
        ("product", "Milan", "Genoa"),
    ]
    assert failures(v, Policy(measurements=frozenset(), products=frozenset())) == [
        ("measurement", report.measurement.hex(), "nothing"),
        ("product", "Milan", "nothing"),
    ]
    validate(
        v,
        Policy(
            measurements=frozenset({report.measurement, other48}),
            host_data=report.host_data,
            report_data=report.report_data,
            products=frozenset({Product.MILAN}),
        ),
    )


def test_warnings_of_the_default_policy() -> None:
    notes = warnings(DEFAULT_POLICY)
    for phrase in (
        "measurement not pinned",
        "HOST_DATA not pinned",
        "REPORT_DATA not pinned",
        "no TCB floor",
        "no minimum firmware",
        "VMPL not constrained",
        "products not restricted",
        "any cloud provider",
    ):
        assert any(phrase in n for n in notes), phrase
    assert not any("debug" in n for n in notes)


def test_warnings_shrink_as_the_policy_grows() -> None:
    strict = Policy(
        signers=frozenset({SigningKey.VCEK}),
        vmpl=0,
        min_tcb={"reported": TcbFloor(bl=3)},
        min_firmware=FirmwareVersion(1, 55, 0),
        measurements=frozenset({bytes(48)}),
        host_data=bytes(32),
        report_data=bytes(64),
        products=frozenset({Product.GENOA}),
    )
    assert warnings(strict) == []
    assert warnings(dataclasses.replace(strict, min_tcb={"launch": TcbFloor(bl=1)})) == [
        "no floor on REPORTED_TCB (the TCB the VEK certifies)"
    ]
    loose = warnings(dataclasses.replace(strict, allow_debug=True, allow_migrate_ma=True))
    assert loose[0].startswith("debug guests allowed")
    assert loose[1].startswith("migration agents allowed")


# --- TOML -----------------------------------------------------------------------------------

FULL = """
[snp]
allow_debug = false
allow_migrate_ma = false
allow_smt = false
signers = ["VLEK"]
csp_ids = ["CN=cc-us-east-2.amazonaws.com"]
vmpl = 0
max_vmpl = 1
products = ["Milan", "Genoa"]
min_firmware = "1.55.29"
measurements = [
  "8922ebbdd00ec2c541f36a6e7a82a8773a7accb451ed67bc94e740dbe92c93c4e8c9af857f5ceeb5a493df2a570d7bf0",
]
host_data = "0000000000000000000000000000000000000000000000000000000000000000"
report_data = "%s"

[snp.min_tcb.reported]
bl = 4
tee = 0
snp = 24
ucode = 217

[snp.min_tcb.launch]
fmc = 1
""" % ("ab" * 64)


def test_load_full_policy() -> None:
    policy = load_policy(FULL)
    assert policy == Policy(
        allow_smt=False,
        signers=frozenset({SigningKey.VLEK}),
        csp_ids=frozenset({"CN=cc-us-east-2.amazonaws.com"}),
        vmpl=0,
        max_vmpl=1,
        products=frozenset({Product.MILAN, Product.GENOA}),
        min_firmware=FirmwareVersion(1, 55, 29),
        measurements=frozenset(
            {
                bytes.fromhex(
                    "8922ebbdd00ec2c541f36a6e7a82a8773a7accb451ed67bc94e740dbe92c93c4e8c9af857f5ceeb5a493df2a570d7bf0"
                )
            }
        ),
        host_data=bytes(32),
        report_data=bytes([0xAB]) * 64,
        min_tcb={"reported": TcbFloor(bl=4, tee=0, snp=24, ucode=217), "launch": TcbFloor(fmc=1)},
    )


def test_empty_snp_table_is_the_default_policy() -> None:
    assert load_policy("[snp]\n") == DEFAULT_POLICY


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("snp = 1", "needs an \\[snp\\] table"),
        ("[other]\n", "needs an \\[snp\\] table"),
        ("[snp\n", "not TOML"),
        ("[snp]\nalow_debug = true", "unknown keys \\['alow_debug'\\]"),
        ("[snp]\nallow_debug = 1", "allow_debug: expected true or false"),
        ("[snp]\nsigners = 'VCEK'", "signers: expected a list of strings"),
        ("[snp]\nsigners = ['VCEK', 2]", "signers: expected a list of strings"),
        ("[snp]\nsigners = ['vcek']", "signers: one of"),
        ("[snp]\nproducts = ['Rome']", "products: one of"),
        ("[snp]\nvmpl = -1", "vmpl: expected a non-negative integer"),
        ("[snp]\nmax_vmpl = true", "max_vmpl: expected a non-negative integer"),
        ("[snp]\nmin_tcb = 3", "min_tcb: expected a table of tables"),
        ("[snp]\nmin_tcb.reported = 3", "min_tcb.reported: expected a table"),
        ("[snp.min_tcb.reported]\nspl = 3", "unknown keys \\['spl'\\]"),
        ("[snp.min_tcb.newest]\nbl = 3", "unknown TCB"),
        (
            "[snp.min_tcb.reported]\nbl = 'x'",
            "min_tcb.reported.bl: expected a non-negative integer",
        ),
        ("[snp]\nmin_firmware = '1.55'", "min_firmware: expected 'major.minor.build'"),
        ("[snp]\nmin_firmware = 1.5", "min_firmware: expected"),
        ("[snp]\nmin_firmware = '1.x.3'", "min_firmware: expected"),
        ("[snp]\nmeasurements = ['00']", "measurements: 1 bytes, expected 48"),
        ("[snp]\nhost_data = 'zz'", "host_data: not hex"),
        ("[snp]\nhost_data = 5", "host_data: expected a hex string"),
        ("[snp]\nreport_data = '00'", "report_data: 1 bytes, expected 64"),
        ("[snp]\ncsp_ids = [1]", "csp_ids: expected a list of strings"),
    ],
)
def test_malformed_policies(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        load_policy(text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_random_text_into_load_policy(text: str) -> None:
    with contextlib.suppress(AttestationError):
        load_policy(text)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            ["allow_debug", "signers", "vmpl", "min_tcb", "min_firmware", "host_data", "products"]
        ),
        st.one_of(
            st.booleans(),
            st.integers(-3, 3),
            st.text(max_size=5),
            st.lists(st.text(max_size=5), max_size=2),
        ),
    )
)
def test_random_values_into_load_policy(table: dict[str, object]) -> None:
    lines = ["[snp]"] + [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    with contextlib.suppress(AttestationError):
        load_policy("\n".join(lines))
