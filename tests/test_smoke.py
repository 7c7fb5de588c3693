import subprocess
import sys

from changeconsole import __version__


def test_version_flag() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "changeconsole", "--version"], capture_output=True, text=True, check=True
    )
    assert __version__ in out.stdout
