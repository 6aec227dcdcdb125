"""What system tests get from the ``sandbox`` fixture, and small helpers."""

from __future__ import annotations

import secrets
import smtplib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import dns.resolver
import requests
from servicesupport import free_port

from e2a.cli.sandbox import supervisor
from e2a.cli.sandbox.capture import Store
from e2a.cli.sandbox.dns import DnsServer
from e2a.cli.sandbox.postfix import Instance
from e2a.cli.sandbox.postgres import Cluster
from e2a.cli.sandbox.stack import Access, Sandbox
from e2a.core import accounts
from e2a.core import dns as core_dns
from e2a.core.db import single_connection
from e2a.core.store import agents as agent_store
from e2a.core.store import users as user_store


@dataclass(frozen=True)
class RunningSandbox:
    """What system tests use: the parts, the addresses and the credentials."""

    box: Sandbox                # the whole sandbox (config(), status(), down(), ...)
    config_path: Path           # E2A_CONFIG of the services
    smtp_port: int              # the sandbox Postfix's public smtpd on 127.0.0.1
    api_url: str
    api_key: str                # the bootstrapped user's
    user_email: str
    agent_email: str            # a local-mode agent of that user
    capture: Store              # mail that left for the internet
    cluster: Cluster            # stop()/start() for outages
    postfix: Instance
    maillog: Path
    dns: DnsServer              # add records, then reload()

    @classmethod
    def of(cls, box: Sandbox, access: Access) -> RunningSandbox:
        return cls(box=box, config_path=box.config_path, smtp_port=box.ports.smtp,
                   api_url=box.api_url, api_key=access.api_key, user_email=access.user_email,
                   agent_email=access.agent_email, capture=Store(box.capture_dir),
                   cluster=box.cluster, postfix=box.postfix, maillog=box.postfix.maillog,
                   dns=box.dns)

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """A request to our API with the bootstrapped user's key."""
        headers = {"Authorization": f"Bearer {self.api_key}", **kwargs.pop("headers", {})}
        return requests.request(method, self.api_url + path, headers=headers, timeout=15,
                                **kwargs)

    def agent_path(self, email: str | None = None) -> str:
        return f"/api/v1/agents/{quote(email or self.agent_email, safe='')}"

    def messages(self, email: str | None = None, **params: Any) -> list[dict[str, Any]]:
        response = self.api("GET", self.agent_path(email) + "/messages", params=params)
        assert response.status_code == 200, response.text
        return response.json()["messages"]


def new_agent(sandbox: RunningSandbox, *, hitl: bool, prefix: str = "bot",
              user_id: str | None = None) -> dict[str, Any]:
    """A fresh agent on the shared domain, HITL on or off, of ``user_id``
    (default: the bootstrapped user)."""
    cfg = sandbox.box.config()
    with single_connection(cfg) as conn:
        if user_id is None:
            user = user_store.user_by_email(conn, sandbox.user_email)
            assert user is not None
            user_id = user["id"]
        agent = accounts.register_agent(conn, cfg, user_id,
                                        slug=f"{prefix}-{secrets.token_hex(4)}",
                                        name=f"{prefix} bot")
        agent_store.update_agent(conn, agent["id"], {"hitl_enabled": hitl})
    return agent


@contextmanager
def extra_smtpd(sandbox: RunningSandbox, options: str) -> Iterator[int]:
    """One more smtpd of the sandbox's Postfix, with these ``-o`` options,
    on a free loopback port for as long as the context lasts."""
    port = free_port()
    service = f"127.0.0.1:{port}/inet"
    postfix = sandbox.postfix
    postfix.postconf("-M", f"{service}=127.0.0.1:{port} inet n - n - - smtpd {options}")
    postfix.reload()
    try:
        wait_until(lambda: supervisor.accepts(f"127.0.0.1:{port}"), timeout=15,
                   what=f"the extra smtpd on port {port} listening")
        yield port
    finally:
        postfix.postconf("-MX", service)
        postfix.reload()


@contextmanager
def sandbox_resolver(sandbox: RunningSandbox) -> Iterator[None]:
    """dnspython (and so dkimpy) asks the sandbox's DNS meanwhile, as a
    receiver on the internet would ask the internet's."""
    previous = dns.resolver.default_resolver
    core_dns.configure(sandbox.box.config())
    try:
        yield
    finally:
        dns.resolver.default_resolver = previous


def wait_until(check: Callable[[], Any], timeout: float = 20.0, interval: float = 0.2,
               what: str = "condition") -> Any:
    """The first truthy result of ``check``, polling up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not met after {timeout}s")
        time.sleep(interval)


@dataclass(frozen=True)
class Smtpd:
    """An smtpd of the sandbox's Postfix."""

    port: int


@contextmanager
def smtpd_without_policy(sandbox: RunningSandbox) -> Iterator[Smtpd]:
    """One more smtpd of the sandbox's Postfix, meanwhile: the same milter,
    no policy service at RCPT (loopback clients may relay, as on the public
    one), so what the client hears at end of data is the milter's own."""
    port = free_port()
    service = f"127.0.0.1:{port}/inet"
    sandbox.postfix.postconf(
        "-M", f"{service}=127.0.0.1:{port} inet n - n - - smtpd "
        "-o smtpd_recipient_restrictions=permit_mynetworks,reject")
    sandbox.postfix.reload()
    try:
        wait_until(lambda: supervisor.accepts(f"127.0.0.1:{port}"), timeout=20,
                   what=f"smtpd on port {port}")
        yield Smtpd(port)
    finally:
        sandbox.postfix.postconf("-MX", service)
        sandbox.postfix.reload()


def compose(sender: str, to: str, subject: str, body: str) -> bytes:
    """A plain RFC 5322 message with CRLF line ends, as an MUA would send it."""
    msg = EmailMessage()
    msg["From"] = f"Ada Sender <{sender}>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="sandbox.test")
    msg.set_content(body)
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


@dataclass(frozen=True)
class Reply:
    stage: str   # the SMTP command that got the final answer: MAIL, RCPT or DATA
    code: int
    text: str


def smtp_send(port: int, sender: str, rcpt: str, data: bytes) -> Reply:
    """One SMTP transaction; stops at the first answer that is not a success."""
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo("client.sandbox.test")
        code, text = client.mail(sender)
        if code != 250:
            return Reply("MAIL", code, text.decode())
        code, text = client.rcpt(rcpt)
        if code not in (250, 251):
            return Reply("RCPT", code, text.decode())
        try:
            code, text = client.data(data)
        except smtplib.SMTPDataError as exc:  # refused at DATA itself, before the body
            code, text = exc.smtp_code, exc.smtp_error
        return Reply("DATA", code, text.decode(errors="replace"))
