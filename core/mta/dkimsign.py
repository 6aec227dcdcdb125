"""DKIM-signing outbound mail with the sending domain's key (dkimpy).

relaxed/relaxed: the signature survives the header refolding and the
whitespace changes relays make. It covers the headers a reader trusts or a
thread depends on, those present in the message; From is signed once more
than it occurs, so a second From added on the way breaks the signature
instead of being shown to the reader as the author.

dkimpy stays the signer of record (canonicalization, header selection, the
tag list, folding); only its RSA step, pure-Python modular exponentiation at
~7 ms per 2048-bit signature, is done by OpenSSL through ``cryptography``
(~0.7 ms). RSASSA-PKCS1-v1_5 is deterministic, so the signature bytes are
exactly those dkimpy's own arithmetic would produce (a unit test pins that).
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import dkim
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from e2a.core.accounts.dkimkeys import SigningKey

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"sha256": hashes.SHA256, "sha1": hashes.SHA1}
_PURE_PYTHON_SIGN = dkim.RSASSA_PKCS1_v1_5_sign
_install_lock = threading.Lock()


@functools.lru_cache(maxsize=256)
def _openssl_key(n: int, e: int, d: int, p: int, q: int, dmp1: int, dmq1: int,
                 iqmp: int) -> rsa.RSAPrivateKey:
    # Building the OpenSSL key (and its blinding state) once per domain key.
    return rsa.RSAPrivateNumbers(p, q, d, dmp1, dmq1, iqmp,
                                 rsa.RSAPublicNumbers(e, n)).private_key()


def _rsa_sign(hash: Any, private_key: dict[str, int]) -> bytes:
    """dkimpy's RSASSA_PKCS1_v1_5_sign(hash, private_key), in C."""
    algorithm = _HASHES.get(str(hash.name).lower())
    if algorithm is None:
        return _PURE_PYTHON_SIGN(hash, private_key)
    key = _openssl_key(private_key["modulus"], private_key["publicExponent"],
                       private_key["privateExponent"], private_key["prime1"],
                       private_key["prime2"], private_key["exponent1"],
                       private_key["exponent2"], private_key["coefficient"])
    return key.sign(hash.digest(), padding.PKCS1v15(), utils.Prehashed(algorithm()))


def use_openssl_rsa() -> None:
    """Route dkimpy's RSA signing step through OpenSSL (idempotent).

    dkimpy calls the module-level name from DKIM.gen_header; replacing that
    name is the only seam it offers short of copying gen_header."""
    with _install_lock:
        if dkim.RSASSA_PKCS1_v1_5_sign is not _rsa_sign:
            dkim.RSASSA_PKCS1_v1_5_sign = _rsa_sign
            # Its pure-Python ASN.1 parse of the PEM (~0.3 ms) once per key,
            # not per message; dkimpy only reads the parsed numbers.
            dkim.parse_pem_private_key = functools.lru_cache(maxsize=256)(
                dkim.parse_pem_private_key)

SIGNED_HEADERS = (
    "from", "sender", "reply-to", "to", "cc", "subject", "date", "message-id",
    "in-reply-to", "references", "mime-version", "content-type",
    "content-transfer-encoding",
    # RFC 8058 section 4: one-click unsubscribe only counts when signed.
    "list-unsubscribe", "list-unsubscribe-post",
)
OVERSIGNED = ("from",)


def header_names(raw: bytes) -> set[str]:
    """The names of the header fields of ``raw`` (lowercase)."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    names = set()
    for line in head.split(b"\r\n"):
        if line[:1] not in (b" ", b"\t") and b":" in line:
            names.add(line.split(b":", 1)[0].strip().lower().decode("ascii", "replace"))
    return names


def sign(raw: bytes, key: SigningKey) -> bytes:
    """``raw`` with a DKIM-Signature for ``key``'s domain on top."""
    present = header_names(raw)
    include = [h for h in SIGNED_HEADERS if h in present]
    include += [h for h in OVERSIGNED if h in present]
    use_openssl_rsa()
    signature = dkim.sign(raw, key.selector.encode("ascii"), key.domain.encode("ascii"),
                          key.private_pem, canonicalize=(b"relaxed", b"relaxed"),
                          include_headers=[h.encode("ascii") for h in include])
    return signature + raw
