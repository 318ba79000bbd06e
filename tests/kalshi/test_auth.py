"""Signing follows Kalshi's documented recipe."""

import base64

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from kalshi import auth


def test_message_is_timestamp_method_path_without_query():
    assert auth.signing_message("1703123456789", "get", "/trade-api/v2/markets?limit=5") == (
        b"1703123456789GET/trade-api/v2/markets"
    )


def test_signature_verifies_with_the_public_key_using_pss_digest_length_salt():
    key = auth.generate_private_key()
    headers = auth.signed_headers("key-id", key, "GET", "/trade-api/ws/v2", now_ms=1703123456789)
    assert headers["KALSHI-ACCESS-KEY"] == "key-id"
    assert headers["KALSHI-ACCESS-TIMESTAMP"] == "1703123456789"
    # Verify independently of our own verify(), with Kalshi's stated parameters.
    key.public_key().verify(
        base64.b64decode(headers["KALSHI-ACCESS-SIGNATURE"]),
        b"1703123456789GET/trade-api/ws/v2",
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
        hashes.SHA256(),
    )


def test_verify_refuses_a_wrong_path_a_wrong_key_and_garbage():
    key = auth.generate_private_key()
    sig = auth.sign(key, "1", "GET", "/trade-api/v2/markets")
    assert auth.verify(key.public_key(), sig, "1", "GET", "/trade-api/v2/markets")
    assert not auth.verify(key.public_key(), sig, "1", "GET", "/trade-api/v2/events")
    assert not auth.verify(auth.generate_private_key().public_key(), sig, "1", "GET", "/trade-api/v2/markets")
    assert not auth.verify(key.public_key(), "not base64!", "1", "GET", "/trade-api/v2/markets")


def test_pem_round_trip(tmp_path):
    key = auth.generate_private_key()
    (tmp_path / "k.pem").write_bytes(auth.private_key_pem(key))
    (tmp_path / "k.pub").write_bytes(auth.public_key_pem(key.public_key()))
    loaded = auth.load_private_key(tmp_path / "k.pem")
    sig = auth.sign(loaded, "1", "GET", "/x")
    assert auth.verify(auth.load_public_key(tmp_path / "k.pub"), sig, "1", "GET", "/x")
