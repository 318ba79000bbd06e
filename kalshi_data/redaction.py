"""Secrets stay out of error reports and log lines, whatever the log level.

* Error reports (the DEBUG page, admin e-mails): Django's filter hides
  settings and request.META entries whose *names* look secret (KEY, PASS,
  TOKEN...). DATABASE_URL and REDIS_URL carry a password inside a URL and
  runserver copies the environment into request.META, so their names are
  added, and any `scheme://user:password@host` value has its password
  masked.
* Log lines: at DEBUG, `websockets` logs the opening handshake's request
  headers, Kalshi's KALSHI-ACCESS-SIGNATURE and -KEY among them; an API
  client's Authorization or X-API-Key header could appear the same way.
  `RedactSecretsFilter` sits on the console handler (settings.LOGGING), so
  every record, from any logger, is rewritten before it is written.
"""

from __future__ import annotations

import logging
import re

from django.views.debug import SafeExceptionReporterFilter

MASK = "********************"
# user:password@ in a URL: the password is group 2.
_URL_PASSWORD = re.compile(r"([a-z][a-z0-9+.-]*://[^:/@\s]*:)([^@\s]+)(@)", re.IGNORECASE)
# A header line or repr: `Name: value`, `'Name': 'value'`, `("Name", "value")`.
_SECRET_HEADER = re.compile(
    r"((?:KALSHI-ACCESS-(?:SIGNATURE|KEY)|Authorization|X-API-Key|Cookie)['\"]?\s*[:,]\s*['\"]?)"
    r"([^'\"\r\n]+)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    text = _URL_PASSWORD.sub(lambda m: m.group(1) + MASK + m.group(3), text)
    return _SECRET_HEADER.sub(lambda m: m.group(1) + MASK, text)


class SecretsReporterFilter(SafeExceptionReporterFilter):
    hidden_settings = re.compile(
        "API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|DATABASE_URL|REDIS_URL|DSN",
        flags=re.IGNORECASE,
    )

    def cleanse_setting(self, key, value):
        value = super().cleanse_setting(key, value)
        if type(value) is str:  # not lazy objects that merely look like strings
            return _URL_PASSWORD.sub(lambda m: m.group(1) + MASK + m.group(3), value)
        return value


class RedactSecretsFilter(logging.Filter):
    """Rewrites a record's message with secrets masked; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: let the handler report it
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
