"""The kalshi_sim command's key handling (the serving itself is Simulator, tested elsewhere)."""

import pytest
from django.core.management import CommandError, call_command

from collector.kalshi import auth
from collector.simulator.devkey import ensure_dev_key


def test_dev_key_is_created_once_private_and_reused(tmp_path):
    path = tmp_path / "var" / "sim-dev-key.pem"
    key = ensure_dev_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    again = ensure_dev_key(path)
    signature = auth.sign(again, "1", "GET", "/trade-api/v2/markets")
    assert auth.verify(key.public_key(), signature, "1", "GET", "/trade-api/v2/markets")


def test_command_refuses_to_run_without_an_accepted_key():
    with pytest.raises(CommandError, match="no accepted key"):
        call_command("kalshi_sim")
    with pytest.raises(CommandError, match="go together"):
        call_command("kalshi_sim", "--key-id", "x")


def test_command_rejects_bad_fault_rates(tmp_path):
    with pytest.raises(CommandError, match="drop_rate"):
        call_command("kalshi_sim", "--dev-key", str(tmp_path / "k.pem"), "--drop-rate", "2")
