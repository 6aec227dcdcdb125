"""The outbound data-loss guard: each secret kind, the checksummed personal
data, risky attachments, and the hold reason the content filter stores.
Every token here is made up (random characters in the provider's format)."""

from __future__ import annotations

import pytest

from e2a.core.protection import outbound
from e2a.core.protection.parts import Attachment, parse

A36 = "aB3dE5fG7hJ9kL1mN2pQ4rS6tU8vW0xY2zA4"


def rules(text: str) -> set[str]:
    return {f.rule for f in outbound.scan_text(text)}


@pytest.mark.parametrize(("text", "rule"), [
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----",
     "private_key"),
    ("-----BEGIN EC PRIVATE KEY-----", "private_key"),
    ("-----BEGIN PGP PRIVATE KEY BLOCK-----", "private_key"),
    ("id AKIAZ3MPLR5TQ2WXYV7K", "aws_access_key"),
    ("aws_secret_access_key = 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", "aws_secret_key"),
    ('{"type": "service_account", "project_id": "p"}', "gcp_service_account"),
    ("key=AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY", "gcp_api_key"),
    ("AccountKey=" + "Ab1+" * 22 + "==", "azure_storage_key"),
    ("https://acct.blob.core.windows.net/c?sv=2022-11-02&ss=b&sig=" + "A" * 40 + "%3D",
     "azure_sas"),
    ("ghp_" + A36, "github_token"),
    ("github_pat_11ABCDEFG0" + "a" * 72, "github_token"),
    ("glpat-" + "xY7" * 6 + "zz", "gitlab_token"),
    ("xoxb-123456789012-1234567890123-" + "a" * 24, "slack_token"),
    ("https://hooks.slack.com/services/T0ABCDEF1/B0ABCDEF12/" + "a" * 24, "slack_webhook"),
    ("sk_live_" + "a1B2" * 6, "stripe_key"),
    ("rk_test_" + "a1B2" * 6, "stripe_test_key"),
    ("sk-proj-" + "a1B2_" * 10, "openai_key"),
    ("sk-" + "a1B2" * 12, "openai_key"),
    ("sk-ant-api03-" + "a1B2-" * 19, "anthropic_key"),
    ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLWJ5dGVzLWhlcmU", "jwt"),
    ("postgres://app:S3cr3tPassw0rd@db.example:5432/app", "database_url"),
    ("mongodb+srv://root:hunter2hunter2@cluster0.example.net/db", "database_url"),
    ("NODE_ENV=prod\nPORT=80\nAPI_KEY=9f8e7d6c5b4a39281706\n", "env_block"),
    ("card 4111111111111111", "card_number"),
    ("card 5555-5555-5555-4444", "card_number"),
    ("amex 3782 822463 10005", "card_number"),
    ("IBAN GB82 WEST 1234 5698 7654 32", "iban"),
    ("SSN 536-22-8714", "us_ssn"),
    ("NIE X1234567L", "es_dni"),
    ("BSN: 111222333", "nl_bsn"),
    ("SIN: 130 692 502", "ca_sin"),
    ("NIR : 1 85 05 78 006 084 91", "fr_nir"),
    ("num\u00e9ro de s\u00e9curit\u00e9 sociale 269052A12345688", "fr_nir"),
])
def test_rule_fires(text, rule):
    assert rule in rules(text)


@pytest.mark.parametrize("text", [
    "AKIAIOSFODNN7EXAMPLE is the example key from the docs",
    "postgres://user:password@localhost/app",
    "postgres://user:${DB_PASSWORD}@localhost/app",
    "mysql://root:<password>@db/app",
    "eyJub3QiOiJhIGp3dCJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLWJ5dGVzLWhlcmU",  # header has no alg
    "API_KEY=<your key>\nSECRET=changeme\nDEBUG=1\n",
    "order 4111111111111112",  # Luhn fails
    "ref 1234567812345678",  # no issuer prefix
    "IBAN DE89 3704 0044 0532 0130 01",  # mod-97 fails
    "SSN 666-12-3456, 900-12-3456, 123-00-4567, 123-45-0000, 078-05-1120",
    "DNI 12345678A",  # wrong check letter
    "BSN 123456789",  # fails the 11-test
    "order 111222333",  # a valid 11-test, but no BSN named
    "order 130 692 502",  # a valid SIN, but no SIN named
    "SIN 130 692 503",  # Luhn fails
    "ref 185057800608491",  # a valid NIR, but no NIR named
    "NIR 1 85 05 78 006 084 92",  # wrong key
    "The -----BEGIN PUBLIC KEY----- block is public.",
    "Version 3.14.159265358979323",
])
def test_lookalikes_stay_quiet(text):
    assert outbound.scan_text(text) == []


def test_checksums():
    assert outbound.luhn("79927398713") and not outbound.luhn("79927398710")
    assert outbound.card_issuer("378282246310005") == "American Express"
    assert outbound.card_issuer("6011111111111117") == "Discover"
    assert outbound.card_issuer("2223003122003222") == "Mastercard"
    assert outbound.iban_valid("DE89370400440532013000")
    assert outbound.iban_valid("NL91 ABNA 0417 1643 00")
    assert not outbound.iban_valid("NL91ABNA041716430")  # wrong length for NL
    assert outbound.ssn_valid("536", "22", "8714") and not outbound.ssn_valid("000", "22", "8714")
    assert outbound.dni_valid("", "12345678", "Z") and outbound.dni_valid("X", "1234567", "L")
    assert outbound.bsn_valid("111222333") and not outbound.bsn_valid("111222334")


def test_ssn_needs_context_to_hold_at_medium():
    bare = outbound.scan_text("ticket 536-22-8714")
    named = outbound.scan_text("social security number 536-22-8714")
    assert bare[0].score < 0.75 <= named[0].score


def test_rationales_never_carry_the_secret():
    token = "ghp_" + A36
    found = outbound.scan_text(f"token {token} and card 4111111111111111")
    assert found
    assert all(token not in f.rationale and "4111" not in f.rationale for f in found)


@pytest.mark.parametrize(("name", "ctype", "risky"), [
    ("server.key", "application/octet-stream", True),
    ("bundle.PFX", "application/octet-stream", True),
    ("cert.pem", "application/x-pem-file", True),
    (".env", "text/plain", True),
    (".env.production", "text/plain", True),
    ("prod.env", "text/plain", True),
    ("id_rsa", "application/octet-stream", True),
    ("id_ed25519.txt", "text/plain", True),
    ("app.sqlite3", "application/octet-stream", True),
    ("", "application/x-pkcs12", True),
    ("id_rsa.pub", "text/plain", False),
    ("report.pdf", "application/pdf", False),
    ("keynote.pptx", "application/octet-stream", False),
    ("environment.txt", "text/plain", False),
])
def test_risky_attachments(name, ctype, risky):
    assert (outbound.risky_attachment(Attachment(name, ctype, 10)) is not None) == risky


def test_hold_reason_and_text_attachments():
    raw = (b"From: agent@agents.example\r\nTo: bob@example.com\r\nSubject: config\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
           b"Content-Type: text/plain\r\n\r\nSee attached.\r\n--b\r\n"
           b"Content-Type: text/plain; name=notes.txt\r\n"
           b"Content-Disposition: attachment; filename=notes.txt\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n"
           b"LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQpNSUlFCi0tLS0tRU5EIFJTQSBQUklWQVRFIEtF"
           b"WS0tLS0tCg==\r\n--b--\r\n")
    msg = parse(raw)
    assert outbound.outbound_hold(msg, "off") == (None, [])
    reason, found = outbound.outbound_hold(msg, "low")
    assert reason is not None
    assert reason == {"type": "scan", "code": "outbound_scan",
                      "summary": "a private key block (attachment notes.txt)",
                      "category": "secret", "confidence": 0.99}
    assert [f.where for f in found] == ["attachment notes.txt"]


def test_clean_mail_is_sent():
    msg = parse(b"From: a@agents.example\r\nTo: b@example.com\r\nSubject: hi\r\n\r\n"
                b"Invoice 2026-044: EUR 3,617.60, order 4400-1187-2231.\r\n")
    assert outbound.outbound_hold(msg, "high") == (None, [])
