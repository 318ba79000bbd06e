"""Production settings from the environment, secrets kept out, the deploy recipe valid."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from django.test import override_settings

from kalshi_data.redaction import MASK, RedactSecretsFilter, SecretsReporterFilter
from tests.redis_server import free_port, redis_server

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION_ENV = ROOT / "deploy" / "production.env.example"


def production_env(**changes) -> dict:
    """The documented production environment (deploy/production.env.example)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("DEBUG", "DATABASE_URL", "REDIS_URL", "KALSHI_TEST_DB_NAME")}
    for line in PRODUCTION_ENV.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    env.update(DJANGO_SETTINGS_MODULE="kalshi_data.settings", **changes)
    return env


def manage(*args, env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_check_deploy_is_clean_under_the_documented_production_environment():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env())
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_warns_without_them():
    env = production_env()
    for name in ("SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SECURE_COOKIES"):
        env.pop(name)
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode != 0
    for warning in ("W004", "W008", "W012", "W016"):
        assert warning in result.stderr


def _settings_json(env, expression: str):
    code = ("import django, json; django.setup(); from django.conf import settings as s; "
            f"print(json.dumps({expression}))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_security_settings_come_from_the_environment():
    values = _settings_json(production_env(), "[s.CACHES['default']['BACKEND'], "
                            "s.CACHES['default']['LOCATION'], s.REST_FRAMEWORK['NUM_PROXIES'], "
                            "s.SECURE_PROXY_SSL_HEADER, s.SECURE_SSL_REDIRECT, "
                            "s.SECURE_HSTS_SECONDS, s.SESSION_COOKIE_SECURE, "
                            "s.CSRF_COOKIE_SECURE, s.CSRF_TRUSTED_ORIGINS, s.DEBUG]")
    assert values == ["django.core.cache.backends.redis.RedisCache", "redis://127.0.0.1:6379/0",
                      1, ["HTTP_X_FORWARDED_PROTO", "https"], True, 31536000, True, True,
                      ["https://api.example.org"], False]


def test_development_defaults_stay_per_process_and_ignore_x_forwarded_for():
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "NUM_PROXIES")}
    env.update(DEBUG="1", DJANGO_SETTINGS_MODULE="kalshi_data.settings")
    values = _settings_json(env, "[s.CACHES['default']['BACKEND'], "
                            "s.REST_FRAMEWORK['NUM_PROXIES'], s.SECURE_SSL_REDIRECT]")
    assert values == ["django.core.cache.backends.locmem.LocMemCache", 0, False]


def test_with_redis_every_process_sees_the_same_slots(tmp_path, rf):
    from django.core.cache import cache

    from backtest_api.limits import acquire

    with redis_server(tmp_path) as url:
        redis_cache = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": url, "KEY_PREFIX": "kalshi-data"}}
        with override_settings(CACHES=redis_cache, API_HEAVY_PER_KEY=1, API_HEAVY_TOTAL=1):
            request = rf.get("/")
            request.auth = None
            slots = acquire(request, "replay")
            # Another process, configured from the environment alone.
            code = ("import django; django.setup(); from django.core.cache import cache; "
                    "print(cache.get('slot:all:0'))")
            other = subprocess.run(
                [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                env={**os.environ, "DEBUG": "1", "REDIS_URL": url,
                     "DJANGO_SETTINGS_MODULE": "kalshi_data.settings"}, timeout=60)
            assert other.stdout.strip().splitlines()[-1] == cache.get("slot:all:0")
            slots.release()
            assert cache.get("slot:all:0") is None


# --- Admin login --------------------------------------------------------------------------


@pytest.mark.django_db
@override_settings(AXES_FAILURE_LIMIT=3)
def test_admin_login_locks_an_address_out_after_repeated_failures(client, django_user_model):
    django_user_model.objects.create_superuser("admin", "a@example.org", "right-password")
    for _ in range(2):
        response = client.post("/admin/login/", {"username": "admin", "password": "wrong"})
        assert response.status_code == 200  # the form again, with an error
    response = client.post("/admin/login/", {"username": "admin", "password": "wrong"})
    assert response.status_code == 429
    response = client.post("/admin/login/", {"username": "admin", "password": "right-password"})
    assert response.status_code == 429  # locked out, even with the right password
    # Another address is not.
    response = client.post("/admin/login/", {"username": "admin", "password": "right-password"},
                           REMOTE_ADDR="192.0.2.7")
    assert response.status_code == 302


# --- Secrets ------------------------------------------------------------------------------


def _error_report(request) -> str:
    """The DEBUG 500 page for a failure while serving `request`."""
    from django.views.debug import ExceptionReporter

    try:
        raise RuntimeError("boom")
    except RuntimeError:
        return ExceptionReporter(request, *sys.exc_info()).get_traceback_html()


def test_error_reports_mask_the_database_password(rf):
    # Spelled in two parts: the report also shows this test's source lines.
    request = rf.get("/", DATABASE_URL="postgres://kalshi:hunter" "2@db:5432/kalshi",
                     REDIS_URL="redis://:redis" "pass@cache:6379/0",
                     KALSHI_REST_URL="https://user:url" "pass@example.org/x")
    html = _error_report(request)
    for secret in ("hunter" + "2", "redis" + "pass", "url" + "pass"):
        assert secret not in html
    assert "DATABASE_URL" in html
    meta = SecretsReporterFilter().get_safe_request_meta(request)
    assert meta["KALSHI_REST_URL"] == f"https://user:{MASK}@example.org/x"


def test_the_console_handler_redacts_secrets():
    handlers = logging.getLogger().handlers
    assert any(isinstance(f, RedactSecretsFilter) for h in handlers for f in h.filters)


def test_websockets_debug_logs_never_show_the_signature():
    """The real websockets client at DEBUG logs its handshake headers: masked."""
    from websockets.sync.client import connect
    from websockets.sync.server import serve

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactSecretsFilter())
    logger = logging.getLogger("websockets")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        with serve(lambda ws: ws.close(), "127.0.0.1", 0) as server:
            port = server.socket.getsockname()[1]
            import threading

            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            with connect(f"ws://127.0.0.1:{port}/", additional_headers={
                "KALSHI-ACCESS-KEY": "key-id-123", "KALSHI-ACCESS-SIGNATURE": "c2lnbmF0dXJl",
                "KALSHI-ACCESS-TIMESTAMP": "1700000000000",
            }) as ws:
                pass
            server.shutdown()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    text = stream.getvalue()
    assert "KALSHI-ACCESS-SIGNATURE" in text  # the headers were logged...
    assert "c2lnbmF0dXJl" not in text and "key-id-123" not in text  # ...but not their values
    assert "1700000000000" in text


def _run_dev():
    loader = importlib.machinery.SourceFileLoader("run_dev", str(ROOT / "bin" / "run-dev"))
    spec = importlib.util.spec_from_loader("run_dev", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_make_run_with_real_credentials_keeps_debug_off(tmp_path, monkeypatch):
    run_dev = _run_dev()
    monkeypatch.setattr(run_dev, "ROOT", tmp_path)
    # The Makefile's default DEBUG=1 is not the user's choice: off.
    changes = run_dev.real_credentials_env({"DEBUG": "1", "RUN_DEV_DEBUG_ORIGIN": "file",
                                            "KALSHI_API_KEY_ID": "k"})
    assert changes["DEBUG"] == "0" and changes["EMBEDDED_DATABASE"] == "1"
    assert len(changes["SECRET_KEY"]) >= 50
    assert run_dev.real_credentials_env({"RUN_DEV_DEBUG_ORIGIN": "file"})["SECRET_KEY"] == \
        changes["SECRET_KEY"]  # made once, kept
    # DEBUG the user set themselves is respected.
    assert run_dev.real_credentials_env({"DEBUG": "1", "RUN_DEV_DEBUG_ORIGIN": "environment"}) == {}


# --- Collector metrics ---------------------------------------------------------------------


def test_collector_stats_lines_become_prometheus_gauges(monkeypatch):
    from collector import metrics
    from collector.runner import _format

    port = free_port()
    monkeypatch.setenv("COLLECTOR_METRICS_PORT", str(port))
    monkeypatch.setattr(metrics, "_server_started", False)
    stats = {"frames_per_s": 412.3, "rows_written_per_s": 405.0, "gaps": 2, "lag_seconds": 0.004,
             "reconnects": 1, "markets": 120, "writer": {"journal_rows": 7}, "state": "live"}
    logging.getLogger("collector.runner").info("collector stats %s", _format(stats))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    for line in ("collector_frames_per_s 412.3", "collector_lag_seconds 0.004",
                 "collector_gaps 2.0", "collector_reconnects 1.0", "collector_markets 120.0",
                 "collector_writer_journal_rows 7.0"):
        assert line in text


# --- The deploy recipe ----------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_the_systemd_units_verify_against_this_checkout(tmp_path):
    env_file = tmp_path / "env"
    env_file.write_text(PRODUCTION_ENV.read_text())
    units = []
    for unit in sorted((ROOT / "deploy" / "systemd").iterdir()):
        text = unit.read_text().replace("/opt/kalshi-data", str(ROOT)).replace(
            "/etc/kalshi-data/env", str(env_file))
        (tmp_path / unit.name).write_text(text)
        units.append(str(tmp_path / unit.name))
    result = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True,
                            text=True, timeout=60)
    problems = [line for line in result.stderr.splitlines()
                if "Unknown" in line or "not executable" in line or "Failed" in line]
    assert result.returncode == 0 and not problems, result.stderr
    assert len(units) == 6  # api, collector, pgpartition + timer, raw-prune + timer


def test_the_units_run_commands_that_exist():
    commands = manage("help", "--commands", env={**os.environ, "DEBUG": "1"}).stdout.split()
    for unit in (ROOT / "deploy" / "systemd").glob("*.service"):
        for line in unit.read_text().splitlines():
            if line.startswith("ExecStart=") and "manage.py" in line:
                assert line.split("manage.py")[1].split()[0] in commands
            if line.startswith("ExecStart=") and "deploy/" in line:
                path = line.split("deploy/")[1].split()[0]
                assert (ROOT / "deploy" / path).exists()


def test_gunicorn_loads_the_config_and_the_app():
    gunicorn = Path(sys.executable).parent / "gunicorn"
    result = subprocess.run(
        [str(gunicorn), "-c", "deploy/gunicorn.conf.py", "--check-config",
         "kalshi_data.wsgi:application"],
        cwd=ROOT, env=production_env(), capture_output=True,
        text=True, timeout=60)
    assert result.returncode == 0, result.stderr
