"""``make security`` part 2: pip-audit of the project's environment against PyPI's vulnerability data.

Run: ``python tests/security/dependency_audit.py``. Exit 1 when a dependency has a known vulnerability
that is not listed (with its reason) in IGNORED. When the vulnerability data cannot be reached (no
network, or a registry mirror that does not serve PyPI's per-version JSON API), the audit says so
plainly, lists how many packages it could not check, and exits 0: CI must not fail for lack of
network, but nobody should read that as "no vulnerabilities". Set CHANGECONSOLE_AUDIT_STRICT=1 to fail
in that case too (e.g. on a release pipeline with network).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Vulnerability id → why it does not apply (reviewed); passed to pip-audit as --ignore-vuln.
IGNORED: dict[str, str] = {}

_NETWORK = re.compile(
    r"ConnectionError|NewConnectionError|NameResolutionError|Max retries exceeded|"
    r"Temporary failure in name resolution|timed out|Network is unreachable|SSLError|ProxyError",
    re.IGNORECASE,
)


def main() -> int:
    strict = os.environ.get("CHANGECONSOLE_AUDIT_STRICT", "") not in ("", "0")
    cmd = [
        sys.executable,
        "-m",
        "pip_audit",
        "--local",
        "--skip-editable",  # changeconsole itself is not on PyPI
        "--progress-spinner",
        "off",
        "--format",
        "json",
        "--timeout",
        "20",
    ]
    for vuln in IGNORED:
        cmd += ["--ignore-vuln", vuln]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False, timeout=900)
    try:
        report = json.loads(proc.stdout or "null")
    except ValueError:
        report = None
    if not isinstance(report, dict):
        if _NETWORK.search(proc.stderr):
            print("pip-audit: vulnerability data unreachable (no network to PyPI's JSON API); NOT AUDITED")
            print("  " + (proc.stderr.strip().splitlines() or ["?"])[-1][:300])
            return 1 if strict else 0
        print(f"pip-audit failed (exit {proc.returncode}):\n{proc.stderr}", file=sys.stderr)
        return 1
    deps = report.get("dependencies", [])
    skipped = [d for d in deps if d.get("skip_reason")]
    audited = [d for d in deps if not d.get("skip_reason")]
    vulnerable = [d for d in audited if d.get("vulns")]
    print(f"pip-audit: {len(deps)} packages, {len(audited)} audited, {len(skipped)} not auditable")
    for name, why in IGNORED.items():
        print(f"  ignored {name}: {why}")
    for dep in vulnerable:
        for vuln in dep["vulns"]:
            fixes = ", ".join(vuln.get("fix_versions") or []) or "no fix yet"
            print(
                f"  VULNERABLE {dep['name']} {dep['version']}: {vuln['id']} (fixed in {fixes})",
                file=sys.stderr,
            )
    if skipped:
        unreachable = [d for d in skipped if "not found on PyPI" in d["skip_reason"]]
        print(
            f"  {len(skipped)} package(s) could not be checked"
            + (
                f" ({len(unreachable)} 'not found on PyPI': this environment's registry mirror does not "
                "serve PyPI's per-version JSON API /pypi/NAME/VERSION/json that pip-audit reads)"
                if unreachable
                else ""
            )
        )
        if not audited:
            print("  NOT AUDITED: no package could be checked here; run `make security` with PyPI access")
            if strict:
                return 1
    return 1 if vulnerable else 0


if __name__ == "__main__":
    sys.exit(main())
