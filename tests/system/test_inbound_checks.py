"""The inbound checks through the real Postfix: the policy service's answers
at RCPT (unknown agent, quota, rate) and the milter's verdict on a signed and
on a spoofed message, as a sending MTA sees them and as they are stored."""

from __future__ import annotations

import base64
import secrets
import shutil
import smtplib
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dkim
import pytest
from sandbox_harness import RunningSandbox, compose, smtp_send, wait_until
from servicesupport import free_port, serve, write_config

from e2a.cli.sandbox import supervisor
from e2a.core import accounts
from e2a.core.db import single_connection

pytestmark = pytest.mark.system

HELO = "client.sandbox.test"
# The strict policy service's limits (per minute).
STRICT_PER_IP = 4
STRICT_PER_AGENT = 3


def _conn(sandbox: RunningSandbox) -> Any:
    return single_connection(sandbox.box.config())


def _new_agent(sandbox: RunningSandbox, **user_limits: int) -> dict[str, Any]:
    """A new user with one agent, and these users columns set (plain SQL:
    no product code changes a plan yet)."""
    cfg = sandbox.box.config()
    tag = secrets.token_hex(4)
    with _conn(sandbox) as conn:
        user = accounts.create_user(conn, f"owner-{tag}@sandbox.test")
        for column, value in user_limits.items():
            conn.execute(f"UPDATE users SET {column} = %s WHERE id = %s", (value, user["id"]))
        return accounts.register_agent(conn, cfg, user["id"], slug=f"checks-{tag}")


def _stored(sandbox: RunningSandbox, subject: str) -> list[dict[str, Any]]:
    with _conn(sandbox) as conn:
        return conn.execute("SELECT * FROM messages WHERE subject = %s",
                            (subject,)).fetchall()


def _send(sandbox: RunningSandbox, rcpt: str, sender: str = "ada@sandbox.test",
          data: bytes | None = None) -> tuple[Any, str]:
    subject = f"checks {secrets.token_hex(6)}"
    reply = smtp_send(sandbox.smtp_port, sender, rcpt,
                      data or compose(sender, rcpt, subject, "hello\n"))
    return reply, subject


# -- the policy service at RCPT -----------------------------------------------

def test_unknown_agent_is_550_5_1_1_at_rcpt(sandbox: RunningSandbox) -> None:
    reply, _ = _send(sandbox, f"nobody-{secrets.token_hex(4)}@agents.sandbox.test")
    assert (reply.stage, reply.code) == ("RCPT", 550), reply
    assert reply.text.startswith("5.1.1 "), reply
    assert "no such agent" in reply.text


def test_over_the_monthly_count_is_552_5_2_2_at_rcpt(sandbox: RunningSandbox) -> None:
    agent = _new_agent(sandbox, max_messages_month=1)
    first, subject = _send(sandbox, agent["email"])
    assert first.code == 250, first
    assert len(_stored(sandbox, subject)) == 1
    second, subject = _send(sandbox, agent["email"])
    assert (second.stage, second.code) == ("RCPT", 552), second
    assert second.text.startswith("5.2.2 ") and "monthly message quota" in second.text
    assert _stored(sandbox, subject) == []


def test_over_the_storage_quota_is_552_5_2_2_at_rcpt(sandbox: RunningSandbox) -> None:
    agent = _new_agent(sandbox)
    first, subject = _send(sandbox, agent["email"])
    assert first.code == 250, first
    [row] = _stored(sandbox, subject)
    with _conn(sandbox) as conn:
        conn.execute("UPDATE users SET max_storage_bytes = %s WHERE id = %s",
                     (row["size_bytes"], agent["user_id"]))
    second, _ = _send(sandbox, agent["email"])
    assert (second.stage, second.code) == ("RCPT", 552), second
    assert second.text.startswith("5.2.2 ") and "storage quota" in second.text


@dataclass(frozen=True)
class StrictService:
    """A second smtpd on the sandbox Postfix whose policy service has tiny
    rate limits, and that lets the test pose as any client (XCLIENT)."""

    port: int

    def rcpts(self, client_ip: str, recipients: list[str]) -> list[tuple[int, str]]:
        """The RCPT answers of one session from ``client_ip``."""
        with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as smtp:
            smtp.ehlo(HELO)
            code, text = smtp.docmd("XCLIENT", f"ADDR={client_ip}")
            assert code == 220, (code, text)
            smtp.ehlo(HELO)
            code, text = smtp.mail("ada@sandbox.test")
            assert code == 250, (code, text)
            answers = []
            for rcpt in recipients:
                code, text = smtp.rcpt(rcpt)
                answers.append((code, text.decode()))
            return answers


@pytest.fixture(scope="module")
def strict(sandbox: RunningSandbox) -> Iterator[StrictService]:
    work = Path(tempfile.mkdtemp(prefix="e2a-strict-"))
    work.chmod(0o755)  # Postfix's smtpd must reach the socket
    sock = work / "policy.sock"
    config = write_config(sandbox.box.config(), work / "strict.toml",
                          f'[policy]\nlisten = "unix:{sock}"\n'
                          f'socketmap_listen = "unix:{work / "socketmap.sock"}"\n'
                          f"rate_per_client_ip = {STRICT_PER_IP}\n"
                          f"rate_per_agent = {STRICT_PER_AGENT}\n")
    port = free_port()
    service = f"127.0.0.1:{port}/inet"
    postfix = sandbox.postfix
    with serve("policy", config, work / "policy.log", ready="policy listening"):
        postfix.postconf(
            "-M", f"{service}=127.0.0.1:{port} inet n - n - - smtpd"
            f" -o smtpd_recipient_restrictions=check_policy_service,unix:{sock}"
            " -o smtpd_authorized_xclient_hosts=127.0.0.0/8")
        postfix.reload()
        try:
            wait_until(lambda: supervisor.accepts(f"127.0.0.1:{port}"), timeout=15,
                       what="the strict smtpd listening")
            yield StrictService(port)
        finally:
            postfix.postconf("-MX", service)
            postfix.reload()
    shutil.rmtree(work, ignore_errors=True)


def _fresh_ip() -> str:
    return "10." + ".".join(str(b) for b in secrets.token_bytes(3))


def test_rate_per_client_is_450_4_7_1_at_rcpt(sandbox: RunningSandbox,
                                              strict: StrictService) -> None:
    a, b = _new_agent(sandbox), _new_agent(sandbox)
    ip = _fresh_ip()
    recipients = [(a, b)[i % 2]["email"] for i in range(STRICT_PER_IP + 2)]
    answers = strict.rcpts(ip, recipients)
    assert [code for code, _ in answers] == [250] * STRICT_PER_IP + [450, 450], answers
    assert answers[-1][1].startswith("4.7.1 ") and "from your address" in answers[-1][1]
    # Another client is not held back by this one.
    assert strict.rcpts(_fresh_ip(), [a["email"]])[0][0] == 250


def test_rate_per_agent_is_450_4_7_1_at_rcpt(sandbox: RunningSandbox,
                                             strict: StrictService) -> None:
    agent, other = _new_agent(sandbox), _new_agent(sandbox)
    # One recipient per client: only the agent's count can run out.
    codes = [strict.rcpts(_fresh_ip(), [agent["email"]])[0] for _ in range(STRICT_PER_AGENT)]
    assert [code for code, _ in codes] == [250] * STRICT_PER_AGENT, codes
    code, text = strict.rcpts(_fresh_ip(), [agent["email"]])[0]
    assert code == 450 and text.startswith("4.7.1 ") and "for this agent" in text, text
    assert strict.rcpts(_fresh_ip(), [other["email"]])[0][0] == 250


# -- the milter's verdict ------------------------------------------------------

@dataclass(frozen=True)
class SigningDomain:
    name: str
    selector: str
    key: bytes  # PEM, PKCS#1


@pytest.fixture(scope="module")
def signing_domain(sandbox: RunningSandbox) -> SigningDomain:
    """A sender domain in the sandbox DNS: SPF for loopback, a DKIM key, DMARC."""
    name, selector = f"signed-{secrets.token_hex(4)}.example", "sel1"
    key = subprocess.run(["openssl", "genrsa", "-traditional", "2048"], check=True,
                         capture_output=True).stdout
    public = subprocess.run(["openssl", "rsa", "-pubout", "-outform", "DER"], input=key,
                            check=True, capture_output=True).stdout
    sandbox.dns.add_txt(name, "v=spf1 ip4:127.0.0.0/8 -all")
    sandbox.dns.add_txt(f"{selector}._domainkey.{name}",
                        "v=DKIM1; k=rsa; p=" + base64.b64encode(public).decode())
    # p=none: the verdict is under test here, not what a policy makes of it.
    sandbox.dns.add_txt(f"_dmarc.{name}", "v=DMARC1; p=none")
    sandbox.dns.reload()
    return SigningDomain(name, selector, key)


def _authentication_results(raw: bytes) -> str:
    head = raw.partition(b"\r\n\r\n")[0].decode()
    first = head.split("\r\n")[0]
    assert first.startswith("Authentication-Results: "), head[:300]
    # Unfold: the value continues on lines that start with white space.
    lines = head.split("\r\n")
    value = [first]
    for line in lines[1:]:
        if not line[:1].isspace():
            break
        value.append(line)
    return " ".join(part.strip() for part in value)


def test_aligned_spf_and_dkim_pass_is_verified(sandbox: RunningSandbox,
                                               signing_domain: SigningDomain) -> None:
    domain = signing_domain.name
    sender, subject = f"ada@{domain}", f"signed {secrets.token_hex(6)}"
    message = compose(sender, sandbox.agent_email, subject, "Signed and aligned.\n")
    signature = dkim.sign(message, signing_domain.selector.encode(), domain.encode(),
                          signing_domain.key,
                          include_headers=[b"From", b"To", b"Subject", b"Message-ID"])
    reply = smtp_send(sandbox.smtp_port, sender, sandbox.agent_email, signature + message)
    assert reply.code == 250, reply
    [row] = _stored(sandbox, subject)
    assert row["verified"] is True
    assert (row["spf"], row["dkim"], row["dmarc"]) == ("pass", "pass", "pass")
    results = _authentication_results(bytes(row["raw_message"]))
    assert results.startswith("Authentication-Results: mx.sandbox.test;"), results
    assert f"spf=pass smtp.mailfrom={sender}" in results
    assert f"dkim=pass header.d={domain} header.s={signing_domain.selector}" in results
    assert f"dmarc=pass (p=none) header.from={domain}" in results
    # The signed bytes were stored as they came: the signature still verifies.
    assert dkim.verify(bytes(row["raw_message"]), dnsfunc=_dns_of(signing_domain))


def _dns_of(domain: SigningDomain) -> Any:
    public = subprocess.run(["openssl", "rsa", "-pubout", "-outform", "DER"],
                            input=domain.key, check=True, capture_output=True).stdout
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    return lambda name, timeout=5: record


def test_spoofed_from_is_not_verified(sandbox: RunningSandbox,
                                      signing_domain: SigningDomain) -> None:
    # SPF passes, but for the envelope's domain, not the From domain; no DKIM.
    envelope, subject = "mallory@sandbox.test", f"spoofed {secrets.token_hex(6)}"
    message = compose(f"ceo@{signing_domain.name}", sandbox.agent_email, subject,
                      "Wire the money.\n")
    reply = smtp_send(sandbox.smtp_port, envelope, sandbox.agent_email, message)
    assert reply.code == 250, reply
    [row] = _stored(sandbox, subject)
    assert row["verified"] is False
    assert (row["spf"], row["dmarc"]) == ("pass", "fail")
    results = _authentication_results(bytes(row["raw_message"]))
    assert "spf=pass smtp.mailfrom=mallory@sandbox.test" in results
    assert "dkim=none" in results
    assert f"dmarc=fail (p=none) header.from={signing_domain.name}" in results


# -- hostile and undecodable messages through the real Postfix and milter -------------

def _hostile(sandbox: RunningSandbox, subject: str, extra: bytes) -> bytes:
    return (b"From: Ada <ada@sandbox.test>\r\nTo: " + sandbox.agent_email.encode() + b"\r\n"
            b"Subject: " + subject.encode() + b"\r\n" + extra + b"\r\nhello\r\n")


def test_a_message_the_parser_cannot_decode_is_stored_not_deferred(
        sandbox: RunningSandbox) -> None:
    subject = f"poison {secrets.token_hex(6)}"
    data = _hostile(sandbox, subject, b"MIME-Version: 1.0\r\n"
                    b"Content-Type: text/plain; charset*=idna''abc\r\n")
    reply = smtp_send(sandbox.smtp_port, "ada@sandbox.test", sandbox.agent_email, data)
    assert reply.code == 250, reply
    [row] = _stored(sandbox, subject)
    assert b"charset*=idna''abc\r\n" in bytes(row["raw_message"])


def test_a_forgery_in_deeply_nested_comments_is_removed(sandbox: RunningSandbox) -> None:
    ours = sandbox.box.config().mail.authserv_id
    subject = f"nested {secrets.token_hex(6)}"
    # Folded, as Postfix passes lines of at most 2048 bytes whole.
    nesting = b"\r\n ".join([b"(" * 500] * 80 + [b")" * 500] * 80)
    forged = b"Authentication-Results: " + nesting + b" " + ours.encode() + \
        b"; dkim=pass header.d=bank.example\r\n"
    reply = smtp_send(sandbox.smtp_port, "ada@sandbox.test", sandbox.agent_email,
                      _hostile(sandbox, subject, forged))
    assert reply.code == 250, reply
    [row] = _stored(sandbox, subject)
    assert b"bank.example" not in bytes(row["raw_message"])


def test_more_header_fields_than_the_limit_are_refused_for_good(
        sandbox: RunningSandbox) -> None:
    subject = f"fields {secrets.token_hex(6)}"
    fields = b"".join(b"X-Field-%d: v\r\n" % i for i in range(1500))
    reply = smtp_send(sandbox.smtp_port, "ada@sandbox.test", sandbox.agent_email,
                      _hostile(sandbox, subject, fields))
    assert (reply.code, reply.text) == (552, "5.3.4 Message header exceeds fixed limit"), reply
    assert _stored(sandbox, subject) == []
