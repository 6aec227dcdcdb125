"""core.mailauth.evidence: the /v1 authentication object read back from the
Authentication-Results our milter wrote (core/mailauth/verdict.py's form)."""

from __future__ import annotations

from e2a.core.mailauth import evidence

ROW = {"spf": "none", "dkim": "none", "dmarc": "none", "verified": False,
       "envelope_sender": "", "direction": "inbound", "sender": "a@example.org"}


def raw(header: str, *, authserv: str = "mx.test") -> bytes:
    return (f"Authentication-Results: {authserv};\r\n\t{header}\r\n"
            "From: a@example.org\r\n\r\nbody\r\n").encode()


def test_helo_identity_and_no_signature():
    found = evidence.authentication(raw("spf=none smtp.helo=client.example.net;\r\n\t"
                                        "dkim=none;\r\n\tdmarc=none header.from=example.org"),
                                    "mx.test", ROW)
    assert found == {"spf": {"status": "none", "domain": "client.example.net",
                             "aligned": None},
                     "dkim": [],
                     "dmarc": {"status": "none", "domain": "example.org", "policy": None,
                               "aligned_by": []}}


def test_quoted_values_and_a_failed_dmarc():
    found = evidence.authentication(raw('spf=softfail smtp.mailfrom="odd;user@Example.ORG";'
                                        '\r\n\tdkim=pass header.d=mail.example.org '
                                        'header.s="s;1";\r\n\tdmarc=fail (p=quarantine) '
                                        'header.from=example.com'), "mx.test", ROW)
    assert found["spf"] == {"status": "softfail", "domain": "example.org", "aligned": None}
    assert found["dkim"] == [{"status": "pass", "domain": "mail.example.org",
                              "selector": "s;1", "aligned": False}]
    assert found["dmarc"] == {"status": "fail", "domain": "example.com",
                              "policy": "quarantine", "aligned_by": []}


def test_someone_elses_header_is_not_ours():
    found = evidence.authentication(raw("spf=pass smtp.mailfrom=a@example.org;\r\n\t"
                                        "dmarc=pass header.from=example.org",
                                        authserv="evil.example"), "mx.test",
                                    {**ROW, "spf": "fail"})
    assert found["spf"]["status"] == "fail"  # the stored result, not the forged one
    assert found["dmarc"]["status"] == "none"


def test_verified_domain_only_for_verified_inbound():
    auth = {"dmarc": {"domain": "example.org"}}
    assert evidence.verified_domain({**ROW, "verified": True}, auth) == "example.org"
    assert evidence.verified_domain({**ROW, "verified": False}, auth) is None
    assert evidence.verified_domain({**ROW, "verified": True, "direction": "outbound"},
                                    auth) is None
