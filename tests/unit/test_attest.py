"""docs/contract.md's X-E2A-Auth-* vectors, byte for byte."""

from e2a.core.inbound import attest

SECRET = "e2a-interop-test-secret-0123456789abcdef"
RAW = b"From: alice@example.com\r\nTo: bot@agents.example.com\r\nSubject: hi\r\n\r\nhello bob\r\n"


def vector(delegation: str = "") -> attest.Attestation:
    return attest.Attestation(
        verified=True, sender="alice@example.com", entity_type="human",
        domain_check="spf=pass; dkim=none", delegation=delegation,
        timestamp="2026-06-01T12:00:00Z", message_id="msg_0123456789abcdef0123456789abcdef",
        body_hash=attest.body_hash(RAW))


def test_body_hash_vector():
    assert attest.body_hash(RAW) == (
        "35190ef94ef071030b26aa330315a30c2c4d728b70409997a8eaeb32fa93c831")


def test_signature_vector():
    assert vector().sign(SECRET) == (
        "074b47c4e83813adf8484d8b43d0045ec41537bd526a70d82df7237a728061ae")


def test_signature_vector_with_delegation():
    assert vector("agent=agent-123;human=human-456").sign(SECRET) == (
        "08e5828588769e390282a12dd9d2c3290ecc0c081b5ca3c2cba08a0e47bf8ff9")


def test_headers_omit_empty_delegation_and_verify():
    headers = vector().headers(SECRET)
    assert "X-E2A-Auth-Delegation" not in headers
    assert next(iter(headers)) == "X-E2A-Auth-Verified"
    assert attest.verify(headers, SECRET)


def test_tampered_header_fails_verification():
    headers = vector().headers(SECRET)
    headers["X-E2A-Auth-Verified"] = "false"
    assert not attest.verify(headers, SECRET)
    assert not attest.verify(vector().headers(SECRET), "another-secret")
