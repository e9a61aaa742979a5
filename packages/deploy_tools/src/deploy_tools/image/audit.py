"""Vulnerability audit of the locked runtime set: pip-audit's JSON report and an allow-list.

The audited set is every runtime package of uv.lock (the image's set, `--no-dev`), for every
platform (markers dropped: a vulnerable `pywin32` counts too), pinned and hash-checked.
pip-audit (`--disable-pip`: nothing is installed) asks a vulnerability service and writes a JSON
report; :func:`check` then applies the allow-list (`ci/audit-allowlist.toml`):

    [[allow]]
    id = "GHSA-xxxx-xxxx-xxxx"   # the advisory id pip-audit reports, or one of its aliases (CVE-…)
    package = "jinja2"
    reason = "why it does not affect us, or what we wait for"
    expires = 2026-06-30          # a TOML date; after it the entry is an error

The audit fails (exit 1) on: a finding no valid entry allows; an allow-list entry without id,
package, a non-empty reason or a valid date, with an unknown key, duplicated, or expired; a
package the report skipped (not audited, e.g. "not found on PyPI") or left out; an empty report.
Entries that match no finding are listed but do not fail (the advisory may have been fixed).

    python -m deploy_tools.image.audit [--report r.json]        # export, run pip-audit, check
    python -m deploy_tools.image.audit --from-report r.json     # check a recorded report only
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import Version

from deploy_tools.image import wheelhouse

PIP_AUDIT = "pip-audit==2.10.1"
DEFAULT_ALLOWLIST = Path("ci/audit-allowlist.toml")
DEFAULT_REPORT = Path(".image/audit-report.json")
ENTRY_KEYS = ("id", "package", "reason", "expires")


class AuditError(ValueError):
    """A report that is not pip-audit's JSON format."""


@dataclass(frozen=True)
class Vuln:
    """One advisory reported for a package."""

    id: str
    aliases: tuple[str, ...] = ()
    fix_versions: tuple[str, ...] = ()
    description: str = ""

    @property
    def ids(self) -> set[str]:
        """The id and its aliases (an allow-list entry may name any of them)."""
        return {self.id, *self.aliases}


@dataclass(frozen=True)
class Finding:
    """A package version with one advisory."""

    package: str  # canonical name
    version: str
    vuln: Vuln

    def describe(self) -> str:
        aliases = f" ({', '.join(self.vuln.aliases)})" if self.vuln.aliases else ""
        fix = (
            f"fixed in {', '.join(self.vuln.fix_versions)}"
            if self.vuln.fix_versions
            else "no fixed version"
        )
        return f"{self.package} {self.version}  {self.vuln.id}{aliases}  {fix}"


@dataclass(frozen=True)
class Report:
    """What a pip-audit JSON report says."""

    audited: dict[str, str]  # canonical name -> version
    findings: list[Finding]
    skipped: dict[str, str]  # canonical name -> reason


@dataclass(frozen=True)
class AllowEntry:
    """One valid allow-list entry."""

    id: str
    package: str  # canonical name
    reason: str
    expires: date

    def allows(self, finding: Finding) -> bool:
        return self.package == finding.package and self.id in finding.vuln.ids


@dataclass
class Outcome:
    """The result of checking a report against the allow-list."""

    audited: int
    allowed: list[tuple[Finding, AllowEntry]] = field(default_factory=list)
    denied: list[Finding] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    unused: list[AllowEntry] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.denied and not self.errors

    def describe(self, allowlist: Path = DEFAULT_ALLOWLIST) -> str:
        """A readable summary; the failures first."""
        lines = [
            f"audit: {self.audited} packages audited, "
            f"{len(self.allowed) + len(self.denied)} findings: {len(self.allowed)} allowed, "
            f"{len(self.denied)} not allowed"
        ]
        if self.denied:
            lines.append(
                f"NOT ALLOWED — upgrade, or add an entry (id, package, reason, expires) to "
                f"{allowlist}:"
            )
            lines += [f"  {f.describe()}" for f in self.denied]
        if self.errors:
            lines.append("ERRORS:")
            lines += [f"  {e}" for e in self.errors]
        if self.allowed:
            lines.append("allowed:")
            lines += [
                f"  {f.describe()}  — until {e.expires.isoformat()}: {e.reason}"
                for f, e in self.allowed
            ]
        if self.unused:
            lines.append("allow-list entries that match no finding (remove them?):")
            lines += [f"  {e.id} {e.package}" for e in self.unused]
        lines.append("audit: OK" if self.ok else "audit: FAILED")
        return "\n".join(lines)


def _str_list(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AuditError(f"{what}: expected a list of strings, got {value!r}")
    return tuple(value)


def parse_report(data: Any) -> Report:
    """Read pip-audit's ``-f json`` output (``{"dependencies": [...], "fixes": [...]}``)."""
    if not isinstance(data, dict) or not isinstance(data.get("dependencies"), list):
        raise AuditError("not a pip-audit JSON report: no `dependencies` list")
    audited: dict[str, str] = {}
    findings: list[Finding] = []
    skipped: dict[str, str] = {}
    for i, dep in enumerate(data["dependencies"]):
        if not isinstance(dep, dict) or not isinstance(dep.get("name"), str):
            raise AuditError(f"dependency #{i}: no name: {dep!r}")
        name = canonicalize_name(dep["name"])
        if "skip_reason" in dep:
            skipped[name] = str(dep["skip_reason"])
            continue
        version, vulns = dep.get("version"), dep.get("vulns")
        if not isinstance(version, str) or not isinstance(vulns, list):
            raise AuditError(f"dependency {name}: needs `version` and `vulns`: {dep!r}")
        audited[name] = version
        for vuln in vulns:
            if not isinstance(vuln, dict) or not isinstance(vuln.get("id"), str):
                raise AuditError(f"dependency {name}: a vulnerability without id: {vuln!r}")
            findings.append(
                Finding(
                    name,
                    version,
                    Vuln(
                        id=vuln["id"],
                        aliases=_str_list(vuln.get("aliases", []), f"{name} {vuln['id']} aliases"),
                        fix_versions=_str_list(
                            vuln.get("fix_versions", []), f"{name} {vuln['id']} fix_versions"
                        ),
                        description=str(vuln.get("description") or ""),
                    ),
                )
            )
    return Report(audited, findings, skipped)


def parse_allowlist(data: dict[str, Any], today: date) -> tuple[list[AllowEntry], list[str]]:
    """The valid entries of a parsed allow-list and one error per invalid or expired entry."""
    errors: list[str] = []
    unknown = sorted(set(data) - {"allow"})
    if unknown:
        errors.append(f"unknown top-level keys {unknown} (entries go in [[allow]] tables)")
    raw = data.get("allow", [])
    if not isinstance(raw, list):
        return [], [*errors, "`allow` must be an array of tables ([[allow]])"]
    entries: list[AllowEntry] = []
    seen: set[tuple[str, str]] = set()
    for i, item in enumerate(raw, start=1):
        label = f"entry {i}"
        if not isinstance(item, dict):
            errors.append(f"{label}: not a table")
            continue
        if isinstance(item.get("id"), str):
            label += f" ({item['id']})"
        problems = [f"unknown key {k!r}" for k in sorted(set(item) - set(ENTRY_KEYS))]
        for key in ("id", "package", "reason"):
            value = item.get(key)
            if not isinstance(value, str) or not value.strip():
                problems.append(f"no {key}" if value is None else f"empty or invalid {key}")
        expires = item.get("expires")
        if isinstance(expires, datetime):  # a TOML date-time: take its date
            expires = expires.date()
        elif isinstance(expires, str):
            try:
                expires = date.fromisoformat(expires)
            except ValueError:
                problems.append(f"expires {expires!r} is not a date (YYYY-MM-DD)")
                expires = None
        elif expires is None:
            problems.append("no expires")
        elif not isinstance(expires, date):
            problems.append(f"expires {expires!r} is not a date (YYYY-MM-DD)")
            expires = None
        if isinstance(expires, date) and expires < today:
            problems.append(f"expired on {expires.isoformat()}")
        if problems:
            errors.append(f"{label}: {'; '.join(problems)}")
            continue
        assert isinstance(expires, date)
        entry = AllowEntry(
            item["id"].strip(), canonicalize_name(item["package"]), item["reason"].strip(), expires
        )
        if (entry.id, entry.package) in seen:
            errors.append(f"{label}: duplicate of an earlier entry for {entry.package}")
            continue
        seen.add((entry.id, entry.package))
        entries.append(entry)
    return entries, errors


def load_allowlist(path: Path, today: date) -> tuple[list[AllowEntry], list[str]]:
    """:func:`parse_allowlist` of a TOML file (a missing file allows nothing)."""
    if not path.exists():
        return [], []
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        return [], [f"{path}: {exc}"]
    entries, errors = parse_allowlist(data, today)
    return entries, [f"{path}: {e}" for e in errors]


def check(
    report: Report,
    entries: list[AllowEntry],
    allowlist_errors: Sequence[str] = (),
    *,
    expected: dict[str, str] | None = None,
) -> Outcome:
    """Apply the allow-list to the report; ``expected`` (name -> version) must all be audited."""
    out = Outcome(audited=len(report.audited), errors=list(allowlist_errors))
    if not report.audited and not report.skipped:
        out.errors.append("the report audits no package")
    for name, reason in sorted(report.skipped.items()):
        out.errors.append(f"not audited: {name}: {reason}")
    if expected is not None:
        for name, version in sorted(expected.items()):
            key = canonicalize_name(name)
            if key in report.skipped:
                continue
            got = report.audited.get(key)
            if got is None:
                out.errors.append(f"not in the report: {key} {version}")
            elif Version(got) != Version(version):
                out.errors.append(f"the report audits {key} {got}, the lock has {version}")
    used: set[AllowEntry] = set()
    for finding in report.findings:
        entry = next((e for e in entries if e.allows(finding)), None)
        if entry is None:
            out.denied.append(finding)
        else:
            used.add(entry)
            out.allowed.append((finding, entry))
    out.unused = [e for e in entries if e not in used]
    return out


def locked_requirements(project: Path) -> list[wheelhouse.Requirement]:
    """Every runtime requirement of uv.lock (the image's set), markers kept but not applied."""
    return wheelhouse.parse_requirements(wheelhouse.export_lock(project))


def run_pip_audit(
    requirements: list[wheelhouse.Requirement], report: Path, *, service: str = "pypi"
) -> None:
    """Run pip-audit on the pinned, hashed requirements (markers dropped); JSON to ``report``.

    Its exit status 1 only means "vulnerabilities found": the report is what counts.
    """
    with tempfile.TemporaryDirectory(prefix="airnub-audit-") as tmp:
        req = Path(tmp) / "requirements.txt"
        req.write_text("".join(r.line() + "\n" for r in requirements))
        cmd = ["uv", "tool", "run", "--from", PIP_AUDIT, "pip-audit", "--requirement", str(req),
               "--disable-pip", "--require-hashes", "--format", "json",
               "--vulnerability-service", service, "--progress-spinner", "off",
               "--output", str(report)]  # fmt: skip
        report.unlink(missing_ok=True)
        proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode not in (0, 1) or not report.exists():
        raise RuntimeError(f"pip-audit failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")


def main(argv: list[str] | None = None) -> int:
    """CLI; exit 0 when every finding is allowed and the allow-list is valid, else 1."""
    parser = argparse.ArgumentParser(description="Audit uv.lock's runtime set with pip-audit.")
    parser.add_argument("--project", type=Path, default=Path())
    parser.add_argument("--allowlist", type=Path, default=None,
                        help=f"default: <project>/{DEFAULT_ALLOWLIST}")  # fmt: skip
    parser.add_argument("--report", type=Path, default=None,
                        help=f"where pip-audit's JSON report is kept (default: <project>/"
                        f"{DEFAULT_REPORT})")  # fmt: skip
    parser.add_argument("--from-report", type=Path, default=None,
                        help="check this recorded report instead of running pip-audit")  # fmt: skip
    parser.add_argument("--service", default="pypi", choices=["pypi", "osv"])
    args = parser.parse_args(argv)
    project = args.project.resolve()
    allowlist = args.allowlist or project / DEFAULT_ALLOWLIST
    expected: dict[str, str] | None = None
    try:
        if args.from_report is not None:
            report_path = args.from_report
        else:
            reqs = locked_requirements(project)
            expected = {r.name: r.version for r in reqs}
            report_path = args.report or project / DEFAULT_REPORT
            report_path.parent.mkdir(parents=True, exist_ok=True)
            run_pip_audit(reqs, report_path, service=args.service)
        report = parse_report(json.loads(report_path.read_text()))
    except (RuntimeError, AuditError, OSError, json.JSONDecodeError) as exc:
        print(f"audit: error: {exc}", file=sys.stderr)
        return 1
    entries, errors = load_allowlist(allowlist, datetime.now(UTC).date())
    outcome = check(report, entries, errors, expected=expected)
    print(outcome.describe(allowlist))
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
