"""Container entrypoint: materialise config.json under /tmp, then exec the real command.

The root filesystem is read-only; only /tmp is writable. Config comes from one of:

* a mounted file (Kubernetes ConfigMap, ECS EFS/bind mount): ``CHANGECONSOLE_CONFIG`` points at it and
  nothing is written;
* ``CHANGECONSOLE_CONFIG_JSON``: the document itself, injected by ECS ``secrets`` from an SSM
  parameter (``valueFrom``). Plain JSON, or gzip + base64 (``gzip -9 < config.json | base64 -w0``) to
  fit more customers into the 8 KB of an advanced-tier parameter. It is written with mode 0600 to
  ``CHANGECONSOLE_CONFIG_OUT`` (default ``/tmp/changeconsole/config.json``), ``CHANGECONSOLE_CONFIG`` is
  pointed at that file, and the variable is removed from the environment before the command starts.

Then the command is exec'd (it becomes PID 1 and receives SIGTERM directly).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import os
import sys
from pathlib import Path

ENV_PATH = "CHANGECONSOLE_CONFIG"
ENV_INLINE = "CHANGECONSOLE_CONFIG_JSON"
ENV_OUT = "CHANGECONSOLE_CONFIG_OUT"
DEFAULT_PATH = "/tmp/changeconsole/config.json"


class EntrypointError(Exception):
    pass


def decode_config(value: str) -> str:
    """The JSON text of an inline config: plain JSON or gzip+base64 of it."""
    text = value.strip()
    if not text.startswith("{"):
        try:
            text = gzip.decompress(base64.b64decode(text, validate=True)).decode("utf-8")
        except (binascii.Error, OSError, EOFError, UnicodeDecodeError) as exc:
            raise EntrypointError(f"{ENV_INLINE} is neither JSON nor gzip+base64 JSON: {exc}") from None
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise EntrypointError(f"{ENV_INLINE} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    return text


def materialise(env: dict[str, str]) -> dict[str, str]:
    """Write an inline config to disk if one is given; return the environment for the command."""
    env = dict(env)
    inline = env.pop(ENV_INLINE, None)
    if inline is None:
        return env
    path = Path(env.get(ENV_OUT) or DEFAULT_PATH)
    text = decode_config(inline)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    tmp.replace(path)
    env[ENV_PATH] = str(path)
    return env


def main(argv: list[str]) -> int:
    if not argv:
        print("entrypoint: no command given", file=sys.stderr)
        return 2
    try:
        env = materialise(dict(os.environ))
    except (EntrypointError, OSError) as exc:
        print(f"entrypoint: {exc}", file=sys.stderr)
        return 2
    os.execvpe(argv[0], argv, env)
    return 0  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
