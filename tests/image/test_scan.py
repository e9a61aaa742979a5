"""tests.image.scan: what counts as a private key in an image layer (a test helper, not shipped)."""

from __future__ import annotations

from tests.image.scan import holds_private_key


def test_private_key_detector() -> None:
    body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7" * 2
    assert holds_private_key(f"-----BEGIN PRIVATE KEY-----\n{body}\n".encode())
    assert holds_private_key(f"-----BEGIN OPENSSH PRIVATE KEY-----\n{body}\n".encode())
    # The bare header string (as in TLS libraries) is not a key.
    assert not holds_private_key(b'fmt = "-----BEGIN PRIVATE KEY-----";')
