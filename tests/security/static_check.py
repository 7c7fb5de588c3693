"""``make security`` part 1: bandit over src/, every finding fixed or explained here.

Run: ``python tests/security/static_check.py``. Exit 1 on any finding not listed in ACCEPTED (or on a
bandit error); each accepted finding is printed with its explanation. Config: ``[tool.bandit]`` in
pyproject.toml (B101 is skipped there, with the reason).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# (test id, file, text that must occur in the flagged code) → why it is acceptable.
ACCEPTED: dict[tuple[str, str, str], str] = {
    ("B104", "src/changeconsole/cli/worker_cmd.py", "0.0.0.0"): (
        "--health-host defaults to all interfaces: container health probes (ECS/K8s) come from outside "
        "the container; the endpoints expose liveness/readiness only, and --health-host narrows it"
    ),
    ("B104", "src/changeconsole/worker/options.py", "0.0.0.0"): (
        "same default as --health-host (WorkerOptions.health_host), for container health probes"
    ),
    ("B105", "src/changeconsole/services/aws.py", "testing"): (
        "the embedded local stack's dummy credentials (moto accepts any); used only in local mode when "
        "no AWS_ACCESS_KEY_ID is set, never against AWS"
    ),
    ("B310", "src/changeconsole/services/localstack.py", "urlopen"): (
        "urlopen of the local stack's own moto-api (reset, data.json, liveness) at the configured local "
        "endpoint (http://127.0.0.1:PORT); the URL is ours, never user- or network-supplied"
    ),
    ("B105", "src/changeconsole/services/events.py", "cc-claim"): (
        "the name of an SES email tag (TAG_TOKEN: it carries a send's claim token), not a secret"
    ),
    ("B311", "src/changeconsole/worker/errors.py", "random"): (
        "random jitter of retry backoff (visibility delay), not a security value"
    ),
    ("B404", "src/changeconsole/worker/supervisor.py", "subprocess"): (
        "the shard supervisor starts its own worker processes: this interpreter and module with a fixed "
        "argument list, no shell (each Popen carries nosec B603 with the same reason)"
    ),
    ("B311", "src/changeconsole/worker/runtime.py", "random"): (
        "random jitter of the poll-error pause, not a security value"
    ),
}


def _accepted(result: dict[str, object]) -> str | None:
    filename = str(result.get("filename", "")).removeprefix("./")
    code = str(result.get("code", ""))
    for (test_id, path, needle), why in ACCEPTED.items():
        if result.get("test_id") == test_id and filename == path and needle in code:
            return why
    return None


def main() -> int:
    cmd = [sys.executable, "-m", "bandit", "-r", "src", "-c", "pyproject.toml", "-f", "json", "-q"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        print(f"bandit did not produce a report (exit {proc.returncode}):\n{proc.stderr}", file=sys.stderr)
        return 1
    errors = report.get("errors") or []
    new = []
    explained = []
    for result in report.get("results", []):
        why = _accepted(result)
        where = f"{result['filename'].removeprefix('./')}:{result['line_number']}"
        line = f"{result['test_id']} {result['issue_severity'].lower()} {where}: {result['issue_text']}"
        if why is None:
            new.append(line)
        else:
            explained.append(f"{line}\n    accepted: {why}")
    files = len(report.get("metrics", {})) - 1
    print(f"bandit: {files} files, {len(explained)} explained finding(s), {len(new)} new")
    for line in explained:
        print(f"  {line}")
    for line in new:
        print(f"  NEW {line}", file=sys.stderr)
    for err in errors:
        print(f"  ERROR {err}", file=sys.stderr)
    if new:
        print(
            "fix each new finding, or explain it in tests/security/static_check.py ACCEPTED", file=sys.stderr
        )
    return 1 if new or errors else 0


if __name__ == "__main__":
    sys.exit(main())
