"""Test DKIM keys in the form the stack uses, and a DNS look-up function for dkimpy."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from components.dns_records import dkim_public_key_base64, dkim_value


def rsa_key() -> tuple[bytes, str]:
    """(private key PEM, DKIM TXT value). PKCS#1 ("RSA PRIVATE KEY"), as pulumi-tls's
    `private_key_pem` gives the stack's RSA key (components/site.py)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, dkim_value(dkim_public_key_base64(public.decode()))


def txt_lookup(records: Mapping[str, str]) -> Callable[..., bytes | None]:
    """dkimpy's `dnsfunc`: TXT text for a name (with or without the final dot), else None."""

    def lookup(name: bytes | str, timeout: int = 5) -> bytes | None:
        key = (name.decode() if isinstance(name, bytes) else name).rstrip(".")
        value = records.get(key)
        return None if value is None else value.encode()

    return lookup
