"""The kalshi_sim command's key handling (the serving itself is Simulator, tested elsewhere)."""

import dataclasses

import pytest
from django.core.management import CommandError, call_command

from kalshi import auth
from simulator.devkey import ensure_dev_key


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


def test_every_fault_has_an_option_whose_default_is_the_config_default():
    from simulator.management.commands.kalshi_sim import Command
    from simulator import FaultConfig, SimulatorConfig

    options = vars(Command().create_parser("manage.py", "kalshi_sim").parse_args([]))
    assert FaultConfig(**{f.name: options[f.name] for f in dataclasses.fields(FaultConfig)}) \
        == FaultConfig()
    assert options["rate"] == SimulatorConfig.rate
    assert options["queue_limit"] == SimulatorConfig.outbound_queue_limit
