"""CollectorConfig: documented defaults, overridden from settings or the environment."""

from pathlib import Path

from collector.config import CollectorConfig


def test_defaults_are_the_documented_numbers():
    cfg = CollectorConfig()
    assert cfg.checkpoint_every_deltas == 500
    assert (cfg.flush_rows, cfg.flush_seconds, cfg.subscribe_batch) == (5000, 0.5, 500)
    assert cfg.use_yes_price is False
    assert cfg.journal_dir.parts[-2:] == ("var", "journal")


def test_from_settings_reads_settings_then_environment(settings, monkeypatch):
    settings.COLLECTOR_CHECKPOINT_EVERY_DELTAS = 5
    monkeypatch.setenv("COLLECTOR_FLUSH_ROWS", "123")
    monkeypatch.setenv("COLLECTOR_JOURNAL_DIR", "/srv/journal")
    monkeypatch.setenv("COLLECTOR_USE_YES_PRICE", "false")
    monkeypatch.setenv("COLLECTOR_CHECKPOINT_EVERY_DELTAS", "999")  # settings win
    cfg = CollectorConfig.from_settings(backoff_max=7.5)
    assert cfg.checkpoint_every_deltas == 5
    assert cfg.flush_rows == 123 and isinstance(cfg.flush_rows, int)
    assert cfg.journal_dir == Path("/srv/journal")
    assert cfg.use_yes_price is False
    assert cfg.backoff_max == 7.5
