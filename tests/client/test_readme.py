"""client/README.md's examples run, in order, against a live server holding a recorded day."""

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.django_db

README = Path(__file__).resolve().parents[2] / "client" / "README.md"
DOCUMENTED_URL = "http://127.0.0.1:8000"


def python_blocks(text):
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_readme_examples_run(served, record, monkeypatch, tmp_path, capsys):
    _, url, key = served
    monkeypatch.setenv("KALSHI_DATA_API_KEY", key)
    monkeypatch.chdir(tmp_path)  # downloads go to ./kalshi-data
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 8
    namespace = {}
    try:
        for number, block in enumerate(blocks):
            code = compile(block.replace(DOCUMENTED_URL, url), f"README block {number}", "exec")
            exec(code, namespace)
    finally:
        if "client" in namespace:
            # Its kept-alive connection holds a server thread and its database session.
            namespace["client"].close()
    out = capsys.readouterr().out
    assert namespace["ticker"] == "KXTEST-26NOV-HOT"
    assert "invalid_parameter end_time" in out and "not_found" in out
    assert (tmp_path / "kalshi-data" / "type=deltas").is_dir()
    # [first delta, last delta): every delta of the day but the last one.
    assert namespace["total"] == namespace["quote"].rows["deltas"] - 1 > 0
