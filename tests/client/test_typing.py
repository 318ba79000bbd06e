"""The client is typed (py.typed) and `mypy --strict` clean."""

import subprocess
import sys
from pathlib import Path

CLIENT = Path(__file__).resolve().parents[2] / "client"


def test_mypy_strict_finds_no_issue(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path),
         "src/kalshi_data_client"],
        cwd=CLIENT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (CLIENT / "src" / "kalshi_data_client" / "py.typed").exists()
