"""Checking Kalshi's KALSHI-ACCESS-* headers on a REST call or WebSocket upgrade.

The verification itself is kalshi.auth.verify, the same module the
collector signs with; this adds what a server checks around it: the three
headers present, a known key id, a timestamp close to our clock.
"""

from __future__ import annotations

import time
from typing import Mapping

from cryptography.hazmat.primitives.asymmetric import rsa

from kalshi import auth


def signature_problem(
    headers: Mapping[str, str],
    method: str,
    path: str,
    accepted_keys: Mapping[str, rsa.RSAPublicKey],
    *,
    max_skew_s: float | None,
    now_ms: int | None = None,
) -> str | None:
    """None when the request is signed by an accepted key; else why not."""
    key_id = headers.get(auth.KEY_HEADER)
    timestamp = headers.get(auth.TIMESTAMP_HEADER)
    signature = headers.get(auth.SIGNATURE_HEADER)
    if not (key_id and timestamp and signature):
        return "missing KALSHI-ACCESS-KEY, KALSHI-ACCESS-TIMESTAMP or KALSHI-ACCESS-SIGNATURE"
    public_key = accepted_keys.get(key_id)
    if public_key is None:
        return "unknown API key id"
    if not timestamp.isdigit():
        return "KALSHI-ACCESS-TIMESTAMP is not Unix milliseconds"
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    if max_skew_s is not None and abs(now_ms - int(timestamp)) > max_skew_s * 1000:
        return "KALSHI-ACCESS-TIMESTAMP too far from the server clock"
    if not auth.verify(public_key, signature, timestamp, method, path):
        return "invalid signature"
    return None


def has_signature_headers(headers: Mapping[str, str]) -> bool:
    return any(h in headers for h in (auth.KEY_HEADER, auth.TIMESTAMP_HEADER, auth.SIGNATURE_HEADER))
