"""Kalshi request signing (RSA-PSS, SHA-256), and its verification for the simulator.

Kalshi's recipe: sign the UTF-8 bytes of `timestamp_ms + METHOD + path`, where
the path includes `/trade-api/v2` (or `/trade-api/ws/v2` for the WebSocket
handshake) but no host and no query string; RSA-PSS with SHA-256, MGF1(SHA-256)
and a salt as long as the digest; the signature is sent base64-encoded. PSS is
randomised, so a signature is checked by verifying it, never by comparing bytes.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

KEY_HEADER = "KALSHI-ACCESS-KEY"
TIMESTAMP_HEADER = "KALSHI-ACCESS-TIMESTAMP"
SIGNATURE_HEADER = "KALSHI-ACCESS-SIGNATURE"

_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)


def signing_message(timestamp_ms: str, method: str, path: str) -> bytes:
    """The exact bytes Kalshi signs: timestamp, upper-case method, path without query."""
    return f"{timestamp_ms}{method.upper()}{path.split('?', 1)[0]}".encode()


def sign(private_key: rsa.RSAPrivateKey, timestamp_ms: str, method: str, path: str) -> str:
    """The base64 signature of one request."""
    signature = private_key.sign(signing_message(timestamp_ms, method, path), _PSS, hashes.SHA256())
    return base64.b64encode(signature).decode()


def signed_headers(
    key_id: str, private_key: rsa.RSAPrivateKey, method: str, path: str, *, now_ms: int | None = None
) -> dict[str, str]:
    """The three KALSHI-ACCESS-* headers for a REST call or the WebSocket upgrade."""
    timestamp = str(now_ms if now_ms is not None else int(time.time() * 1000))
    return {
        KEY_HEADER: key_id,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(private_key, timestamp, method, path),
    }


def verify(
    public_key: rsa.RSAPublicKey, signature_b64: str, timestamp_ms: str, method: str, path: str
) -> bool:
    """True when the signature is valid for this request."""
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        public_key.verify(signature, signing_message(timestamp_ms, method, path), _PSS, hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def load_private_key(path: str | Path) -> rsa.RSAPrivateKey:
    """Read an unencrypted PEM private key (as Kalshi's key download gives it)."""
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path}: not an RSA private key")
    return key


def load_public_key(path: str | Path) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(Path(path).read_bytes())
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError(f"{path}: not an RSA public key")
    return key


def generate_private_key() -> rsa.RSAPrivateKey:
    """A fresh 2048-bit key, for the simulator and tests."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def public_key_pem(key: rsa.RSAPublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
