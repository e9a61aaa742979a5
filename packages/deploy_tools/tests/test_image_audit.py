"""The vulnerability audit's report parsing and allow-list rules, on report fixtures.

No vulnerability service answers here, so pip-audit cannot find anything on this machine:
- fixtures/pip-audit-findings.json is written by hand in pip-audit 2.10's `-f json` format
  (package names and versions from uv.lock; the advisory ids, aliases and texts are invented);
- fixtures/pip-audit-offline-recorded.json is a real report recorded here by
  `python -m deploy_tools.image.audit` (pip-audit 2.10.1): every package skipped.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from deploy_tools.image import audit
from deploy_tools.image.audit import AuditError, parse_allowlist, parse_report

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).resolve().parents[3]
TODAY = date(2026, 3, 1)
FUTURE = date(2026, 9, 30)


def _report(name: str = "pip-audit-findings.json") -> audit.Report:
    return parse_report(json.loads((FIXTURES / name).read_text()))


def _entry(**over: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": "GHSA-2c4m-59x9-fr2g", "package": "jinja2", "expires": FUTURE,
        "reason": "we never render untrusted templates in the sandbox",
    }  # fmt: skip
    entry.update(over)
    return {k: v for k, v in entry.items() if v is not None}


ALL_FOUR = [
    _entry(),
    _entry(id="CVE-2026-31337", package="cryptography", reason="RSA decryption unused"),
    _entry(id="GHSA-8q4m-7vh3-w5cx", package="urllib3", reason="no proxies configured"),
    _entry(id="CVE-2026-20018", package="urllib3", reason="brotli not installed"),
]


def test_parse_the_report() -> None:
    report = _report()
    assert len(report.audited) == 12
    assert report.audited["prefect"] == "3.9.1"
    assert report.skipped == {}
    found = {(f.package, f.vuln.id) for f in report.findings}
    assert found == {
        ("cryptography", "GHSA-5x2g-7q8r-mm3v"), ("jinja2", "GHSA-2c4m-59x9-fr2g"),
        ("urllib3", "GHSA-8q4m-7vh3-w5cx"), ("urllib3", "GHSA-r6q3-9f2c-hp4w"),
    }  # fmt: skip
    crypto = next(f for f in report.findings if f.package == "cryptography")
    assert crypto.vuln.ids == {"GHSA-5x2g-7q8r-mm3v", "CVE-2026-31337", "PYSEC-2026-7"}
    assert crypto.vuln.fix_versions == ("50.0.3",)


def test_without_allow_list_every_finding_fails_with_a_clear_list() -> None:
    outcome = audit.check(_report(), [])
    assert not outcome.ok
    assert len(outcome.denied) == 4
    text = outcome.describe()
    assert "NOT ALLOWED" in text
    assert "jinja2 3.1.6  GHSA-2c4m-59x9-fr2g (CVE-2026-10001)  fixed in 3.1.7" in text
    assert "urllib3 2.8.0  GHSA-r6q3-9f2c-hp4w (CVE-2026-20018)  no fixed version" in text
    assert text.endswith("audit: FAILED")


def test_valid_entries_allow_findings_by_id_or_alias() -> None:
    entries, errors = parse_allowlist({"allow": ALL_FOUR}, TODAY)
    assert errors == []
    outcome = audit.check(_report(), entries, errors)
    assert outcome.ok, outcome.describe()
    assert outcome.denied == []
    assert len(outcome.allowed) == 4
    assert "until 2026-09-30: RSA decryption unused" in outcome.describe()
    assert outcome.describe().endswith("audit: OK")


def test_an_entry_for_another_package_allows_nothing() -> None:
    entries, _ = parse_allowlist({"allow": [_entry(package="markupsafe")]}, TODAY)
    outcome = audit.check(_report(), entries)
    assert "jinja2" in {f.package for f in outcome.denied}
    assert [e.package for e in outcome.unused] == ["markupsafe"]
    assert "match no finding" in outcome.describe()


def test_unused_entries_are_listed_but_do_not_fail() -> None:
    entries, errors = parse_allowlist(
        {"allow": [*ALL_FOUR, _entry(id="GHSA-0000-0000-0000", package="idna")]}, TODAY
    )
    outcome = audit.check(_report(), entries, errors)
    assert outcome.ok
    assert [e.id for e in outcome.unused] == ["GHSA-0000-0000-0000"]


def test_expired_entries_are_errors_and_allow_nothing() -> None:
    expired = _entry(expires=date(2026, 2, 28))
    entries, errors = parse_allowlist({"allow": [expired, *ALL_FOUR[1:]]}, TODAY)
    assert errors == ["entry 1 (GHSA-2c4m-59x9-fr2g): expired on 2026-02-28"]
    outcome = audit.check(_report(), entries, errors)
    assert not outcome.ok
    assert [f.package for f in outcome.denied] == ["jinja2"]
    assert "expired on 2026-02-28" in outcome.describe()
    # The last valid day is the expiry date itself.
    assert parse_allowlist({"allow": [_entry(expires=TODAY)]}, TODAY)[1] == []


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (_entry(reason=None), "no reason"),
        (_entry(reason="   "), "empty or invalid reason"),
        (_entry(expires=None), "no expires"),
        (_entry(expires="next year"), "is not a date"),
        (_entry(expires=20261231), "is not a date"),
        (_entry(id=None), "no id"),
        (_entry(package=""), "empty or invalid package"),
        (_entry(severity="low"), "unknown key 'severity'"),
    ],
)
def test_incomplete_entries_are_errors(entry: dict[str, Any], message: str) -> None:
    entries, errors = parse_allowlist({"allow": [entry]}, TODAY)
    assert entries == []
    assert len(errors) == 1
    assert message in errors[0]


def test_dates_as_strings_duplicates_and_stray_keys() -> None:
    entries, errors = parse_allowlist(
        {"allow": [_entry(expires="2026-09-30"), _entry(package="Jinja2")], "ignore": []}, TODAY
    )
    assert [e.expires for e in entries] == [FUTURE]
    assert errors[0].startswith("unknown top-level keys ['ignore']")
    assert "duplicate" in errors[1]


def test_skipped_packages_fail_the_audit() -> None:
    """The real report of this machine: no service answers, nothing is audited — not a pass."""
    report = _report("pip-audit-offline-recorded.json")
    assert report.audited == {}
    assert len(report.skipped) > 100
    outcome = audit.check(report, [])
    assert not outcome.ok
    assert outcome.denied == []
    assert any(
        e.startswith("not audited: prefect: Dependency not found on PyPI") for e in outcome.errors
    )


def test_every_locked_package_must_be_in_the_report() -> None:
    report = _report()
    expected = dict(report.audited)
    entries, _ = parse_allowlist({"allow": ALL_FOUR}, TODAY)
    assert audit.check(report, entries, expected=expected).ok
    missing = audit.check(report, entries, expected={**expected, "pywin32": "312"})
    assert missing.errors == ["not in the report: pywin32 312"]
    other = audit.check(report, entries, expected={**expected, "prefect": "3.9.2"})
    assert other.errors == ["the report audits prefect 3.9.1, the lock has 3.9.2"]
    assert audit.check(audit.Report({}, [], {}), []).errors == ["the report audits no package"]


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"deps": []},
        {"dependencies": [{"version": "1"}]},
        {"dependencies": [{"name": "x", "version": "1"}]},
        {"dependencies": [{"name": "x", "version": "1", "vulns": [{"fix_versions": []}]}]},
        {"dependencies": [{"name": "x", "version": "1", "vulns": [{"id": "A", "aliases": "B"}]}]},
    ],
)
def test_malformed_reports_are_rejected(data: Any) -> None:
    with pytest.raises(AuditError):
        parse_report(data)


def test_the_repository_allow_list_is_valid_today() -> None:
    from datetime import UTC, datetime

    entries, errors = audit.load_allowlist(ROOT / audit.DEFAULT_ALLOWLIST, datetime.now(UTC).date())
    assert errors == []
    for entry in entries:
        assert entry.reason and entry.expires


def test_allow_list_file_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    allowlist = tmp_path / "allow.toml"
    allowlist.write_text(
        "[[allow]]\n"
        'id = "GHSA-2c4m-59x9-fr2g"\npackage = "jinja2"\nreason = "sandbox unused"\n'
        "expires = 2999-12-31\n"
    )
    args = ["--project", str(ROOT), "--allowlist", str(allowlist),
            "--from-report", str(FIXTURES / "pip-audit-findings.json")]  # fmt: skip
    assert audit.main(args) == 1
    out = capsys.readouterr().out
    assert "4 findings: 1 allowed, 3 not allowed" in out
    assert "cryptography 50.0.2  GHSA-5x2g-7q8r-mm3v" in out
    allowlist.write_text("allow = [\n")
    assert audit.main(args) == 1
    assert "allow.toml" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert audit.main([*args[:-1], str(bad)]) == 1
    assert "not a pip-audit JSON report" in capsys.readouterr().err
