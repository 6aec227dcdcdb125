"""Per-domain DKIM keys: made at registration, private half encrypted at rest.

Each domain gets its own RSA 2048 key pair. The public half is what the user
publishes at ``<selector>._domainkey.<domain>``; the private half is stored
only encrypted, with AES-256-GCM under a key derived (HKDF-SHA256) from
``secrets.encryption_key``, or from ``secrets.hmac_secret`` when that is
unset. The domain name is the associated data, so a ciphertext copied onto
another domain's row does not decrypt. Changing the secret the key derives
from makes the stored keys unreadable: domains would need new keys.

The outbound signer reads a key with ``load_private_key`` (or ``signing_key``
from a row it read itself); nothing else decrypts one.
"""

from __future__ import annotations

import base64
import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from e2a.core.config import Config
from e2a.core.crypto import serverkeys as keys
from e2a.core.store import domains as domain_store

SELECTOR = "e2a"
KEY_BITS = 2048
# First byte of every stored ciphertext, so the format can change later.
FORMAT_V1 = b"\x01"
NONCE_BYTES = 12
_HKDF_INFO = b"e2a dkim private key encryption v1"


class DkimKeyError(Exception):
    """A stored private key cannot be read (wrong secret, damaged row)."""


@dataclass(frozen=True)
class KeyPair:
    selector: str
    public_key: str  # base64 DER SubjectPublicKeyInfo: the record's p= value
    private_pem: bytes  # PKCS#1 PEM, the form dkimpy signs with

    def __repr__(self) -> str:  # the private key never lands in a log line
        return f"KeyPair(selector={self.selector!r}, public_key={self.public_key[:16]!r}...)"


@dataclass(frozen=True)
class SigningKey:
    domain: str
    selector: str
    private_pem: bytes

    def __repr__(self) -> str:
        return f"SigningKey(domain={self.domain!r}, selector={self.selector!r})"


def generate(selector: str = SELECTOR) -> KeyPair:
    private = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    public_der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    pem = private.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    return KeyPair(selector, base64.b64encode(public_der).decode("ascii"), pem)


def record_host(domain: str, selector: str) -> str:
    return f"{selector}._domainkey.{domain}"


def public_record(public_key: str) -> str:
    """The TXT value to publish for this key."""
    return f"v=DKIM1; k=rsa; p={public_key}"


def published_key(record: str) -> str | None:
    """The ``p=`` of a DKIM key record (whitespace removed), None when the
    record is not an RSA DKIM key record."""
    tags: dict[str, str] = {}
    for part in record.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            tags.setdefault(name.strip().lower(), "".join(value.split()))
    if tags.get("v", "DKIM1") != "DKIM1" or tags.get("k", "rsa").lower() != "rsa":
        return None
    return tags.get("p") or None


def encryption_key(cfg: Config) -> bytes:
    source = cfg.secrets.encryption_key or cfg.secrets.hmac_secret
    return keys.hkdf(source, _HKDF_INFO)


def encrypt(key: bytes, domain: str, private_pem: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return FORMAT_V1 + nonce + AESGCM(key).encrypt(nonce, private_pem, domain.encode())


def decrypt(key: bytes, domain: str, blob: bytes) -> bytes:
    blob = bytes(blob)
    if not blob.startswith(FORMAT_V1) or len(blob) <= 1 + NONCE_BYTES:
        raise DkimKeyError(f"stored DKIM key of {domain} has an unknown format")
    return _opened(key, domain, blob)


# The filter signs every message with its domain's key: opened once per
# stored ciphertext. A new key (rotation) is a new ciphertext, a changed
# secret a new ``key``: neither can meet an entry of the old one. Failures
# are not cached (an exception leaves no entry).
@functools.lru_cache(maxsize=256)
def _opened(key: bytes, domain: str, blob: bytes) -> bytes:
    nonce, sealed = blob[1:1 + NONCE_BYTES], blob[1 + NONCE_BYTES:]
    try:
        return AESGCM(key).decrypt(nonce, sealed, domain.encode())
    except InvalidTag:
        raise DkimKeyError(
            f"stored DKIM key of {domain} does not decrypt: was secrets.encryption_key "
            "(or hmac_secret) changed?") from None


def sealed(cfg: Config, domain: str, pair: KeyPair) -> bytes:
    """The private half of ``pair`` as stored on ``domain``'s row."""
    return encrypt(encryption_key(cfg), domain, pair.private_pem)


def load_private_key(conn: psycopg.Connection, cfg: Config, domain: str) -> SigningKey | None:
    """The key to sign ``domain``'s mail with; None when it has none stored."""
    return signing_key(cfg, domain_store.dkim_key(conn, domain))


def signing_key(cfg: Config, row: Mapping[str, Any] | None) -> SigningKey | None:
    """The key of a domain's row (domain, dkim_selector, dkim_private_key_enc);
    None when it has none stored."""
    if row is None or row["dkim_private_key_enc"] is None:
        return None
    pem = decrypt(encryption_key(cfg), row["domain"], row["dkim_private_key_enc"])
    return SigningKey(row["domain"], row["dkim_selector"], pem)
