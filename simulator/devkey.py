"""A development key pair for running the collector against the local simulator.

`kalshi_sim --dev-key var/sim-dev-key.pem` creates the private key there if
it is missing (var/ is git-ignored) and accepts it, so the collector can be
pointed at the simulator with KALSHI_PRIVATE_KEY_PATH set to the same file.
Never a production key: it is generated unencrypted on this machine.
`accepted_keys` turns a served exchange's key options into the keys it accepts.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from kalshi import auth

DEV_KEY_ID = "sim-dev-key"


def ensure_dev_key(path: str | Path) -> rsa.RSAPrivateKey:
    """The private key at `path`, created (mode 0600) when the file does not exist."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = auth.generate_private_key()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(auth.private_key_pem(key))
        return key
    return auth.load_private_key(path)


def accepted_keys(*, key_id: str | None, public_key: str | None, dev_key: str | None,
                  write=print) -> dict[str, rsa.RSAPublicKey]:
    """The keys a served exchange (kalshi_sim, kalshi_replay) accepts, from their
    --key-id/--public-key and --dev-key options. Raises ValueError with what to fix."""
    keys = {}
    if public_key or key_id:
        if not (public_key and key_id):
            raise ValueError("--public-key and --key-id go together")
        try:
            keys[key_id] = auth.load_public_key(public_key)
        except (OSError, ValueError) as exc:
            raise ValueError(f"--public-key: {exc}") from exc
    if dev_key:
        keys[DEV_KEY_ID] = ensure_dev_key(dev_key).public_key()
        write(f"Dev key: KALSHI_API_KEY_ID={DEV_KEY_ID} KALSHI_PRIVATE_KEY_PATH={dev_key}")
    if not keys:
        raise ValueError("no accepted key: give --dev-key PATH, or --public-key PEM with --key-id")
    return keys
