"""docs/engines.md's two example backtests run on exported days; re-exporting replaces."""

import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from django.core.management import call_command

from .uncrossed import MARKET, record_engine_day

pytest.importorskip("hftbacktest")
pytest.importorskip("nautilus_trader")

pytestmark = pytest.mark.django_db
DOC = Path(__file__).resolve().parents[2] / "docs" / "engines.md"
DAY = date(2026, 11, 22)


def _script(name):
    """The python block that follows the line naming `name` in the doc."""
    text = DOC.read_text()
    match = re.search(rf"with `{re.escape(name)}`:\n\n```python\n(.*?)```", text, re.DOTALL)
    assert match, name
    return match.group(1)


def _run(tmp_path, name, argument):
    script = tmp_path / name
    script.write_text(_script(name))
    # A child process: NautilusTrader sets up its logging once per process.
    result = subprocess.run([sys.executable, str(script), str(argument)], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.splitlines()


def test_the_documented_backtests_run_on_exported_days(tmp_path):
    day = record_engine_day(DAY)
    out = tmp_path / "engines"
    for fmt in ("hftbacktest", "nautilus", "nautilus"):  # the second nautilus run replaces
        call_command("export", "--start-date", str(DAY), "--end-date", str(DAY), "--markets",
                     MARKET, "--format", fmt, "--out", str(out))
    lines = _run(tmp_path, "hft_example.py", out / "hftbacktest" / MARKET / str(DAY))
    assert len(lines) >= 15  # the recorded 20-odd seconds, a line a second
    assert any("nan" not in line for line in lines)
    lines = _run(tmp_path, "nautilus_example.py", out / "nautilus")
    assert lines[-1] == f"trades: {day.trades}"
    assert len(lines) > 100
