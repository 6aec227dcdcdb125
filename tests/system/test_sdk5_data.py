"""Today's published SDK, exactly ``e2a==5.8.1``, on the rest of the /v1
data surface against the live sandbox: a custom domain's whole life (register,
get, list, verify against the sandbox's DNS server, an agent on it, delete),
the account's export parsed by the SDK's own UserExport model, and a message's
attachment fetched through its signed download URL."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from sandbox_harness import RunningSandbox, compose, smtp_send, wait_until
from sdk5_session import INSTALL_DIR, Sdk5, Sdk5Error, session

from sandbox.stack import SHARED_DOMAIN

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def account(sandbox: RunningSandbox):
    return sandbox.box.bootstrap(user_email="sdk5-data@sandbox.test", slug="sdk5data")


@pytest.fixture(scope="module")
def sdk(sandbox: RunningSandbox, account) -> Iterator[Sdk5]:
    with session(sandbox.api_url, account.api_key) as client:
        yield client


def raw(sandbox: RunningSandbox, account, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(method, sandbox.api_url + path, timeout=15,
                            headers={"Authorization": f"Bearer {account.api_key}"}, **kwargs)


def test_a_custom_domain_from_register_to_delete(sdk, sandbox, account):
    name = f"five-{secrets.token_hex(4)}.test"
    made = sdk("domains.create", {"domain": name})
    assert (made["domain"], made["verified"]) == (name, False)
    assert made["capabilities"]["inbound"] == "pending"
    records = {r["purpose"]: r for r in made["dns_records"]}
    assert {"ownership", "inbound_mx", "dkim"} <= set(records)
    assert sdk("domains.create", {"domain": name})["verification_token"] == \
        made["verification_token"]
    assert sdk("domains.get", name)["verification_token"] == made["verification_token"]
    assert name in [d["domain"] for d in sdk("domains.list")]

    nothing = sdk("domains.verify", name)
    assert (nothing["verified"], nothing["mx"]) == (False, "missing")
    with pytest.raises(Sdk5Error) as unverified:
        sdk("agents.create", {"email": f"bot@{name}"})
    assert unverified.value.code == "domain_not_verified"

    # The ownership TXT alone is not enough under /v1: the MX must point at us.
    sandbox.dns.add_txt(records["ownership"]["name"], records["ownership"]["value"])
    sandbox.dns.reload()
    assert sdk("domains.verify", name)["verified"] is False
    sandbox.dns.add_mx(name, records["inbound_mx"]["value"], records["inbound_mx"]["priority"])
    sandbox.dns.add_txt(records["dkim"]["name"], records["dkim"]["value"])
    sandbox.dns.reload()
    done = sdk("domains.verify", name)
    assert (done["verified"], done["mx"], done["dkim"]) == (True, "found", "found")
    assert done["verified_at"]
    shown = sdk("domains.get", name)
    assert shown["capabilities"] == {"inbound": "verified", "outbound": "verified"}

    agent = f"bot@{name}"
    assert sdk("agents.create", {"email": agent})["domain_verified"] is True
    with pytest.raises(Sdk5Error) as busy:
        sdk("domains.delete", name)
    assert (busy.value.status, busy.value.code) == (400, "domain_has_agents")
    erased = raw(sandbox, account, "DELETE", "/v1/agents/" + quote(agent, safe=""),
                 params={"confirm": "DELETE", "permanent": "true"})
    assert erased.status_code == 200, erased.text

    assert sdk("domains.delete", name) == {"deleted": True, "domain": name,
                                           "sending_teardown": "confirmed"}
    with pytest.raises(Sdk5Error) as gone:
        sdk("domains.get", name)
    assert gone.value.type == "E2ANotFoundError"


def test_the_export_is_what_the_sdk_parses(sdk, sandbox, account):
    subject = f"export {secrets.token_hex(4)}"
    sender, rcpt = "ada@sandbox.test", account.agent_email
    reply = smtp_send(sandbox.smtp_port, sender, rcpt, compose(sender, rcpt, subject, "kept"))
    assert reply.code == 250, reply
    wait_until(lambda: sdk("messages.list", rcpt, read_status="all"), what="the mail stored")
    exported = sdk("account.export")
    [message] = [m for m in exported["messages"] if m["subject"] == subject]
    assert (message["agent_email"], message["header_from"]) == (rcpt, sender)
    assert exported["schema_version"] == "4"
    assert exported["user"]["email"] == account.user_email
    assert account.agent_email in [a["email"] for a in exported["agents"]]
    assert exported["api_keys"] and "key" not in exported["api_keys"][0]
    download = raw(sandbox, account, "GET", "/v1/account/export")
    assert download.headers["Content-Disposition"].startswith("attachment")
    assert download.headers["X-Request-Id"]


def test_a_forwarded_attachment_downloads_by_its_signed_url(sdk, sandbox, account):
    """Mail with a PDF arrives, the SDK forwards it to a second agent through
    the real Postfix, and the copy's attachment comes back byte for byte
    through the URL getAttachment hands out, with no API key; the same URL
    tampered with, or aimed at another attachment, gets nothing."""
    pdf = b"%PDF-1.4 " + secrets.token_bytes(3000)
    subject = f"attached {secrets.token_hex(4)}"
    sender, first = "ada@sandbox.test", account.agent_email
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, first, subject
    msg.set_content("numbers attached")
    msg.add_attachment(pdf, maintype="application", subtype="pdf", filename="q3.pdf")
    assert smtp_send(sandbox.smtp_port, sender, first, msg.as_bytes()).code == 250
    [arrived] = wait_until(lambda: [m for m in sdk("messages.list", first, read_status="all")
                                    if m["subject"] == subject], what="the mail with the PDF")

    second = f"copy-{secrets.token_hex(3)}@{SHARED_DOMAIN}"
    sdk("agents.create", {"email": second})
    sent = sdk("messages.forward", first, arrived["id"], {"to": [second], "text": "FYI"})
    assert sent["status"] == "accepted", sent
    [copy] = wait_until(lambda: [m for m in sdk("messages.list", second)
                                 if m["subject"] == f"Fwd: {subject}"], timeout=60,
                        what="the forward in the second inbox")
    shown = sdk("messages.get", second, copy["id"])
    assert [(a["filename"], a["size_bytes"]) for a in shown["attachments"]] == [
        ("q3.pdf", len(pdf))]

    view = sdk("messages.get_attachment", second, copy["id"], 0)
    assert (view["filename"], view["content_type"]) == ("q3.pdf", "application/pdf")
    got = requests.get(view["download_url"], timeout=15)  # no Authorization
    assert got.status_code == 200 and got.content == pdf
    token = view["download_url"].split("token=")[1]
    tampered = view["download_url"].replace(token, token[:-3] + ("AAA" if token[-3:] != "AAA"
                                                                 else "BBB"))
    assert requests.get(tampered, timeout=15).status_code == 403
    moved = view["download_url"].replace("/attachments/0/", "/attachments/1/")
    assert requests.get(moved, timeout=15).status_code == 403
    inline = sdk("messages.get_attachment", second, copy["id"], 0, inline=True)
    assert base64.b64decode(inline["data"]) == pdf


def test_an_api_key_with_an_expiry(sdk, sandbox):
    when = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    made = sdk("account.api_keys.create", {"name": "short-lived", "expires_at": when.isoformat()})
    assert made["expires_at"].startswith(when.strftime("%Y-%m-%dT%H:%M:%S"))
    assert made["id"] in [k["id"] for k in sdk("account.api_keys.list")]
    scoped = Sdk5(sandbox.api_url, made["key"])
    try:
        assert scoped("account.get")["scope"] == "account"
    finally:
        scoped.close()
    with pytest.raises(Sdk5Error) as past:
        sdk("account.api_keys.create", {"expires_at": "2020-01-01T00:00:00+00:00"})
    assert past.value.code == "invalid_expires_at"
    sdk("account.api_keys.delete", made["id"])


def test_the_printed_examples_read_the_inbox(sandbox, account):
    """What `make run` prints (devtools/sandbox Access): the /v1 curl, the
    5.x SDK one-liner and the legacy curl, run as printed."""
    subject = f"example {secrets.token_hex(4)}"
    sender, rcpt = "ada@sandbox.test", account.agent_email
    assert smtp_send(sandbox.smtp_port, sender, rcpt,
                     compose(sender, rcpt, subject, "hi")).code == 250

    def run(command: str) -> str:
        env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(INSTALL_DIR)}
        done = subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                              env=env, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    current = wait_until(lambda: [m for m in json.loads(run(account.read_example))["items"]
                                  if m["subject"] == subject], what="the mail in /v1")
    assert current[0]["header_from"] == sender
    assert subject in run(account.sdk_example)
    legacy = json.loads(run(account.legacy_read_example))
    assert subject in json.dumps(legacy)


def test_the_readmes_sdk_example_runs(sandbox, account):
    """README.md's Python example, as written, against this account's agent."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    script = readme.split("python3 - <<'PY'\n", 1)[1].split("\nPY\n", 1)[0]
    subject = f"readme {secrets.token_hex(4)}"
    sender, rcpt = "ada@sandbox.test", account.agent_email
    assert smtp_send(sandbox.smtp_port, sender, rcpt,
                     compose(sender, rcpt, subject, "from the readme test")).code == 250
    wait_until(lambda: [m for m in sdk_list(sandbox, account) if m["subject"] == subject],
               what="the mail in the inbox")
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(INSTALL_DIR),
           "E2A_API_URL": sandbox.api_url, "E2A_API_KEY": account.api_key}
    done = subprocess.run([sys.executable, "-S", "-"], capture_output=True, text=True,
                          env=env, timeout=60, check=False,
                          input=script.replace("hello@agents.sandbox.test", rcpt))
    assert done.returncode == 0, done.stderr
    assert subject in done.stdout and "from the readme test" in done.stdout


def sdk_list(sandbox, account) -> list[dict]:
    return raw(sandbox, account, "GET", "/v1/agents/" + quote(account.agent_email, safe="")
               + "/messages", params={"read_status": "all"}).json()["items"]
