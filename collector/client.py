"""Kalshi endpoints and credentials from settings, in one place.

The collector, the backfill and the dev runner all build their clients here,
so that `KALSHI_ENV`, `KALSHI_REST_URL`, `KALSHI_WS_URL`, `KALSHI_API_KEY_ID`
and `KALSHI_PRIVATE_KEY_PATH` mean the same thing everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from kalshi import auth
from .rest import KalshiRest


@dataclass(frozen=True)
class Credentials:
    key_id: str
    private_key: object  # rsa.RSAPrivateKey


def credentials(*, required: bool = False) -> Credentials | None:
    """The configured API key, or None when none is set (and not `required`)."""
    key_id = settings.KALSHI_API_KEY_ID
    key_path = settings.KALSHI_PRIVATE_KEY_PATH
    if not key_id and not key_path:
        if required:
            raise ImproperlyConfigured(
                "Kalshi credentials are required: set KALSHI_API_KEY_ID and "
                "KALSHI_PRIVATE_KEY_PATH (the PEM file Kalshi gave you)."
            )
        return None
    if not (key_id and key_path):
        raise ImproperlyConfigured("Set both KALSHI_API_KEY_ID and KALSHI_PRIVATE_KEY_PATH, or neither.")
    try:
        private_key = auth.load_private_key(key_path)
    except (OSError, ValueError) as exc:
        raise ImproperlyConfigured(f"KALSHI_PRIVATE_KEY_PATH={key_path}: {exc}") from exc
    return Credentials(key_id, private_key)


def rest_client(config=None, *, creds: Credentials | None = None, base_url: str | None = None) -> KalshiRest:
    """A REST client for the configured host (or `base_url`), signed when a key is configured."""
    from collector.config import CollectorConfig

    config = config or CollectorConfig.from_settings()
    creds = creds or credentials()
    return KalshiRest.from_config(
        config,
        base_url=base_url or settings.KALSHI_REST_URL,
        key_id=creds.key_id if creds else "",
        private_key=creds.private_key if creds else None,
    )
