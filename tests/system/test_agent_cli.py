"""The agent builder's CLI (`e2a login`, `agents`, `listen`, `inbox`, `read`,
`reply`, `send`), run as the installed `e2a` command in a process of its own
against the live sandbox: mail comes in over SMTP and leaves through Postfix
to the capture server, forwarded events are verified by the published SDK
5.8.1, and a local stand-in for an OpenAI Responses endpoint answers mail."""

from __future__ import annotations

import http.server
import json
import os
import secrets
import signal
import stat
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hitlowner import status_of
from sandbox_harness import RunningSandbox, compose, new_agent, smtp_send, wait_until
from sdk5_session import Sdk5, session
from webhooksupport import Receiver

from sandbox.stack import SHARED_DOMAIN

pytestmark = pytest.mark.system

E2A = str(Path(sys.executable).with_name("e2a"))
SENDER = "ada@sandbox.test"  # not ours: replies to it leave for the capture server
AUTH_EXIT, NOT_FOUND_EXIT, HELD_EXIT = 3, 4, 5


class Cli:
    """`e2a` with a home of its own: its settings file lives there."""

    def __init__(self, home: Path, sandbox: RunningSandbox) -> None:
        self.home = home
        self.sandbox = sandbox
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("E2A_API", "E2A_FORWARD"))}
        self.env.update({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
                         "PYTHONSAFEPATH": "1"})

    @property
    def config_file(self) -> Path:
        return self.home / ".config" / "e2a" / "config.toml"

    def __call__(self, *args: str, ok: bool = True, timeout: float = 90,
                 stdin: str = "") -> subprocess.CompletedProcess[str]:
        done = subprocess.run([E2A, *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, input=stdin, check=False)
        if ok:
            assert done.returncode == 0, (args, done.returncode, done.stdout, done.stderr)
        return done

    def login(self) -> None:
        self("login", "--url", self.sandbox.api_url, "--api-key", self.sandbox.api_key)

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([E2A, *args], env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"still running after {timeout}s: {out} {err}") from None
    return proc.returncode, out, err


@pytest.fixture
def cli(sandbox: RunningSandbox, tmp_path: Path) -> Cli:
    return Cli(tmp_path, sandbox)


@pytest.fixture
def logged_in(cli: Cli) -> Cli:
    cli.login()
    return cli


def mail_in(sandbox: RunningSandbox, rcpt: str, subject: str, body: str = "Hi.\n") -> None:
    reply = smtp_send(sandbox.smtp_port, SENDER, rcpt, compose(SENDER, rcpt, subject, body))
    assert reply.code == 250, reply


def fresh_agent(cli: Cli, prefix: str) -> str:
    slug = f"{prefix}-{secrets.token_hex(3)}"
    shown = cli("agents", "register", slug, "--json")
    email = json.loads(shown.stdout)["email"]
    assert email == f"{slug}@{SHARED_DOMAIN}"
    return email


# -- login, whoami, config -------------------------------------------------------

def test_login_writes_a_private_config_and_whoami_works(cli, sandbox):
    cli("login", "--url", sandbox.api_url, stdin=sandbox.api_key + "\n")  # the key piped in
    assert stat.S_IMODE(cli.config_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(cli.config_file.parent.stat().st_mode) == 0o700
    stored = tomllib.loads(cli.config_file.read_text())
    assert (stored["url"], stored["api_key"], stored["shared_domain"]) == (
        sandbox.api_url, sandbox.api_key, SHARED_DOMAIN)
    # No flag and no environment: the stored URL and key serve.
    assert sandbox.user_email in cli("whoami").stdout
    assert json.loads(cli("whoami", "--json").stdout)["scope"] == "account"
    shown = cli("config", "show").stdout
    assert sandbox.api_key not in shown and sandbox.api_key[:12] in shown
    cli("config", "set", "agent", sandbox.agent_email)
    assert tomllib.loads(cli.config_file.read_text())["agent"] == sandbox.agent_email


def test_a_wrong_key_is_an_auth_exit_in_one_line(cli, sandbox):
    for args in (["whoami", "--url", sandbox.api_url, "--api-key", "e2a_acct_wrong"],
                 ["login", "--url", sandbox.api_url, "--api-key", "e2a_acct_wrong"]):
        done = cli(*args, ok=False)
        assert done.returncode == AUTH_EXIT, done
        assert done.stderr.count("\n") == 1 and "401 unauthorized" in done.stderr
        assert "Traceback" not in done.stderr
    assert not cli.config_file.exists()  # a refused login stores nothing
    # The SDK's environment names work as well as the flags.
    cli.env.update({"E2A_API_URL": sandbox.api_url, "E2A_API_KEY": "e2a_acct_wrong"})
    assert cli("whoami", ok=False).returncode == AUTH_EXIT
    assert cli("listen", sandbox.agent_email, "--once", ok=False).returncode == AUTH_EXIT
    cli.env["E2A_API_KEY"] = sandbox.api_key
    assert sandbox.user_email in cli("whoami").stdout


def test_agents_register_list_show_update_delete(logged_in):
    cli = logged_in
    email = fresh_agent(cli, "crud")
    assert email in cli("agents", "list").stdout
    cli("agents", "update", email, "--name", "Renamed Bot")
    assert "Renamed Bot" in cli("agents", "show", email).stdout
    refused = cli("agents", "delete", email, ok=False)  # no terminal to confirm on
    assert refused.returncode == 2
    assert email in cli("agents", "list").stdout
    cli("agents", "delete", email, "--yes")
    assert email not in cli("agents", "list").stdout
    assert email in cli("agents", "list", "--deleted").stdout
    assert cli("agents", "show", "nobody-" + secrets.token_hex(3),
               ok=False).returncode == NOT_FOUND_EXIT


# -- listen ------------------------------------------------------------------------

def test_listen_json_once_prints_a_mail_sent_over_smtp(logged_in, sandbox):
    cli = logged_in
    email = fresh_agent(cli, "listen")
    proc = cli.start("listen", email, "--json", "--once", "--until", "60s")
    subject = f"to the listener {secrets.token_hex(4)}"
    mail_in(sandbox, email, subject)
    code, out, err = finish(proc)
    assert code == 0, err
    [line] = out.splitlines()
    event = json.loads(line)
    assert (event["type"], event["data"]["subject"], event["data"]["delivered_to"]) == (
        "email.received", subject, email)


@pytest.fixture(scope="module")
def sdk(sandbox: RunningSandbox) -> Iterator[Sdk5]:
    with session(sandbox.api_url, sandbox.api_key) as client:
        yield client


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def test_listen_forward_posts_what_the_sdk_verifies(logged_in, sandbox, sdk, receiver):
    cli = logged_in
    email = fresh_agent(cli, "fwd")
    secret = "whsec_" + secrets.token_hex(16)
    subject = f"forward me {secrets.token_hex(4)}"
    mail_in(sandbox, email, subject)
    code, out, err = finish(cli.start("listen", email, "--forward", receiver.url("/agent"),
                                      "--forward-secret", secret, "--once", "--until", "60s"))
    assert code == 0, err
    assert subject in out and "forwarded" in err
    [request] = receiver.wait_for(1, timeout=10)
    event = sdk("construct_event", request.body.decode(), request.headers["X-E2A-Signature"],
                secret)
    assert (event["type"], event["data"]["subject"]) == ("email.received", subject)
    assert request.headers["X-E2A-Event-Type"] == "email.received"
    # Under another secret the same delivery does not verify.
    with pytest.raises(Exception, match="ignature"):
        sdk("construct_event", request.body.decode(), request.headers["X-E2A-Signature"],
            "whsec_other")


def test_listen_prints_its_own_secret_and_stops_cleanly_on_ctrl_c(logged_in, sandbox, sdk,
                                                                 receiver):
    cli = logged_in
    email = fresh_agent(cli, "ctrlc")
    cli("config", "set", "agent", email)  # the default agent: no argument needed
    proc = cli.start("listen", "--forward", receiver.url("/agent"))
    assert proc.stderr is not None
    first = proc.stderr.readline()
    assert first.startswith("signing forwarded events with whsec_"), first
    secret = first.split()[4]
    subject = f"then ctrl-c {secrets.token_hex(4)}"
    mail_in(sandbox, email, subject)
    [request] = receiver.wait_for(1, timeout=30)
    assert sdk("construct_event", request.body.decode(), request.headers["X-E2A-Signature"],
               secret)["data"]["subject"] == subject
    proc.send_signal(signal.SIGINT)
    code, out, err = finish(proc, timeout=15)
    assert code == 0 and subject in out
    assert err.rstrip().endswith("stopped") and "Traceback" not in err


class Responses:
    """A stand-in for an OpenAI Responses endpoint: records each request and
    answers in the Responses format."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append((dict(self.headers.items()), body))
                reply = json.dumps({
                    "id": "resp_1", "object": "response", "status": "completed",
                    "output": [{"type": "message", "role": "assistant", "content": [
                        {"type": "output_text", "text": outer.answer, "annotations": []}]}],
                }).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/responses"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def model() -> Iterator[Responses]:
    server = Responses(f"Thanks, noted. {secrets.token_hex(4)}")
    yield server
    server.close()


QUOTED = "Can you confirm Tuesday?\n\nOn Mon, Bob wrote:\n> Tuesday works for me.\n"


def answer_by_model(cli: Cli, sandbox: RunningSandbox, email: str,
                    model: Responses) -> tuple[str, str]:
    subject = f"question {secrets.token_hex(4)}"
    mail_in(sandbox, email, subject, QUOTED)
    code, _out, err = finish(cli.start("listen", email, "--forward", model.url,
                                      "--forward-token", "sk-test", "--once", "--until", "60s"))
    assert code == 0, err
    [(headers, request)] = model.requests
    assert headers["Authorization"] == "Bearer sk-test"
    text = request["input"]
    assert f"Subject: {subject}" in text and SENDER in text
    assert "Authentication: " in text
    assert "[quoted history, written earlier]\nOn Mon, Bob wrote:\n> Tuesday" in text
    assert text.index("Can you confirm Tuesday?") < text.index("[quoted history")
    return subject, err


def test_forward_token_sends_the_models_answer_as_the_reply(logged_in, sandbox, model):
    cli = logged_in
    email = fresh_agent(cli, "model")
    subject, err = answer_by_model(cli, sandbox, email, model)
    assert "accepted" in err
    out = sandbox.capture.wait_for(
        lambda c: SENDER in c.rcpt_tos and str(c.message["Subject"]) == f"Re: {subject}",
        timeout=30)
    assert model.answer in out.message.get_body(("plain",)).get_content()


def test_forward_token_reply_is_held_when_hitl_is_on(logged_in, sandbox, model):
    cli = logged_in
    agent = new_agent(sandbox, hitl=True, prefix="modelheld")
    subject, err = answer_by_model(cli, sandbox, agent["email"], model)
    assert "pending_review" in err and "held for review until" in err
    message_id = err.split("replied to ")[1].split()[1]
    assert status_of(sandbox, message_id) == "pending_approval"
    assert not [c for c in sandbox.capture.messages()
                if str(c.message["Subject"]) == f"Re: {subject}"]


def test_forward_token_does_not_answer_an_auto_reply(logged_in, sandbox, model):
    cli = logged_in
    email = fresh_agent(cli, "modelauto")
    raw = b"Auto-Submitted: auto-replied\r\n" + compose(SENDER, email, "Out of office", "Away.")
    assert smtp_send(sandbox.smtp_port, SENDER, email, raw).code == 250
    code, _out, err = finish(cli.start("listen", email, "--forward", model.url,
                                      "--forward-token", "sk-test", "--once", "--until", "60s"))
    assert code == 0, err
    assert "not answered: auto_reply (Auto-Submitted: auto-replied)" in err
    assert model.requests == []


# -- inbox, read, reply, send ----------------------------------------------------------

def inbox(cli: Cli, email: str, *args: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in cli("inbox", email, "--json", *args).stdout.splitlines()]


def test_send_inbox_read_save_reply_round_trip(logged_in, sandbox, tmp_path):
    cli = logged_in
    a, b = fresh_agent(cli, "alice"), fresh_agent(cli, "bob")
    notes = tmp_path / "notes.txt"
    notes.write_text("the notes\n")
    subject = f"round trip {secrets.token_hex(4)}"
    sent = cli("send", "--from", a, "--to", b, "--subject", subject, "--body", "see attached",
               "--attach", str(notes))
    assert sent.stdout.strip().endswith(": accepted")
    [arrived] = wait_until(lambda: inbox(cli, b, "--unread", "--from", a), timeout=30,
                           what="the mail in b's inbox")
    assert arrived["subject"] == subject
    table = cli("inbox", b).stdout
    assert arrived["id"] in table and subject in table

    saved = tmp_path / "saved"
    shown = cli("read", arrived["id"], "--save", str(saved)).stdout  # agent found by itself
    assert f"Subject:  {subject}" in shown and "Auth:" in shown
    assert "[0] notes.txt (text/plain" in shown and "see attached" in shown
    assert (saved / "notes.txt").read_text() == "the notes\n"
    assert inbox(cli, b, "--unread") == []  # read marks it read

    answer = tmp_path / "answer.txt"
    answer.write_text("thanks, here is mine")
    blob = tmp_path / "data.bin"
    blob.write_bytes(bytes(range(256)))
    replied = cli("reply", arrived["id"], "--body-file", str(answer), "--attach", str(blob))
    assert replied.stdout.strip().endswith(": accepted")
    [back] = wait_until(lambda: inbox(cli, a, "--from", b), timeout=30,
                        what="the reply in a's inbox")
    assert back["subject"] == f"Re: {subject}"
    full = json.loads(cli("read", back["id"], "--agent", a, "--json", "--save",
                          str(tmp_path / "back")).stdout)
    assert full["body"]["text"].strip() == "thanks, here is mine"
    assert [x["filename"] for x in full["attachments"]] == ["data.bin"]
    assert (tmp_path / "back" / "data.bin").read_bytes() == bytes(range(256))

    missing = cli("read", "msg_" + secrets.token_hex(8), ok=False)
    assert missing.returncode == NOT_FOUND_EXIT and "Traceback" not in missing.stderr


def test_send_from_a_held_agent_exits_held_with_the_expiry(logged_in, sandbox):
    cli = logged_in
    agent = new_agent(sandbox, hitl=True, prefix="sendheld")
    done = cli("send", "--from", agent["email"], "--to", "friend@elsewhere.test",
               "--subject", "held one", "--body", "draft", ok=False)
    assert done.returncode == HELD_EXIT, done
    assert "pending_review (held for review until 20" in done.stdout
    message_id = done.stdout.split(":")[0]
    assert status_of(sandbox, message_id) == "pending_approval"
