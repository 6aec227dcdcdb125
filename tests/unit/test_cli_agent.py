"""The agent CLI's own pieces, one module at a time: the settings file, the
error envelope and exit codes, what `listen` makes of events (the prompt for
a model, a Responses answer, durations) and its reconnect loop, driven with a
scripted socket in place of the network (the real one: tests/system/test_agent_cli.py)."""

from __future__ import annotations

import base64
import json
import stat
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from e2a.cli.agent import listen, mail, settings
from e2a.cli.agent.client import Api, Exit, Failure, envelope_failure, path_segment
from e2a.cli.agent.socket import Closed
from e2a.cli.main import cli
from e2a.core.webhooks import signature

# -- settings ---------------------------------------------------------------------


def test_settings_round_trip_through_toml_whatever_the_value(tmp_path: Path) -> None:
    file = tmp_path / "e2a" / "config.toml"
    hostile = 'e2a_"key"\\\n = [x]\u2028é\t#'
    settings.save({"url": "http://h:1", "api_key": hostile, "unknown": "dropped"}, file)
    assert tomllib.loads(file.read_text()) == {"url": "http://h:1", "api_key": hostile}
    assert settings.load(file) == {"url": "http://h:1", "api_key": hostile}
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert stat.S_IMODE(file.parent.stat().st_mode) == 0o700
    assert [p.name for p in file.parent.iterdir()] == ["config.toml"]  # no temporary left


def test_a_broken_or_huge_settings_file_is_one_line(tmp_path: Path) -> None:
    file = tmp_path / "config.toml"
    file.write_text("url = [unclosed\n")
    with pytest.raises(click.ClickException, match="not valid TOML"):
        settings.load(file)
    file.write_text("# " + "x" * settings.MAX_BYTES)
    with pytest.raises(click.ClickException, match="larger than"):
        settings.load(file)
    assert settings.load(tmp_path / "absent.toml") == {}


def test_settings_path_follows_xdg_then_home() -> None:
    assert settings.path({"XDG_CONFIG_HOME": "/x", "HOME": "/h"}) == Path("/x/e2a/config.toml")
    assert settings.path({"HOME": "/h"}) == Path("/h/.config/e2a/config.toml")


# -- errors and exit codes -------------------------------------------------------


@pytest.mark.parametrize(("status", "code", "exit_code"), [
    (401, "unauthorized", Exit.AUTH), (403, "forbidden", Exit.AUTH),
    (404, "not_found", Exit.NOT_FOUND), (404, "attachment_not_found", Exit.NOT_FOUND),
    (409, "agent_taken", Exit.ERROR), (400, "invalid_request", Exit.ERROR),
    (500, "internal_error", Exit.ERROR)])
def test_the_error_envelope_maps_to_an_exit_code(status: int, code: str,
                                                  exit_code: Exit) -> None:
    failure = envelope_failure(status, {"error": {"code": code, "message": "why\nnot",
                                                  "request_id": "r"}})
    assert failure.exit_code == exit_code
    assert failure.message == f"{status} {code}: why not"


def test_field_details_are_in_the_one_line() -> None:
    failure = envelope_failure(400, {"error": {
        "code": "invalid_request", "message": "bad",
        "details": {"fields": [{"location": "body.to", "message": "required"}]}}})
    assert failure.message == "400 invalid_request: bad (body.to: required)"
    assert envelope_failure(502, "<html>").message == "the API answered 502"


def test_path_segments_are_encoded_and_dots_refused() -> None:
    assert path_segment("a+b@x.test") == "a%2Bb%40x.test"
    with pytest.raises(Failure):
        path_segment("..")


def test_no_url_is_a_usage_error_and_no_key_an_auth_one() -> None:
    with pytest.raises(Failure) as no_url:
        Api("", "k", {}).get("/v1/account")
    assert no_url.value.exit_code == Exit.USAGE
    with pytest.raises(Failure) as no_key:
        Api("http://127.0.0.1:9", "", {}).get("/v1/account")
    assert no_key.value.exit_code == Exit.AUTH


# -- what listen makes of mail ------------------------------------------------------


def test_quoted_history_is_marked_after_the_new_text() -> None:
    text = "Yes, Tuesday.\n\nOn Mon, 1 Jan 2026, Bob <b@x> wrote:\n> Tuesday?\n> ok\n"
    marked = listen.mark_history(text)
    assert marked == ("Yes, Tuesday.\n\n[quoted history, written earlier]\n"
                      "On Mon, 1 Jan 2026, Bob <b@x> wrote:\n> Tuesday?\n> ok\n"
                      "[end of quoted history]")
    assert listen.mark_history("no history here\n") == "no history here\n"
    assert listen.mark_history("> only\n> quoted").startswith(
        "\n\n[quoted history, written earlier]\n> only")


def test_the_prompt_carries_sender_verdict_subject_and_text() -> None:
    message = {"direction": "inbound", "header_from": "Ada <ada@x.test>", "subject": "Hi",
               "verified_domain": None, "body": {"text": "hello\n> old"},
               "authentication": {"dmarc": {"status": "fail"}, "spf": {"status": "pass"},
                                  "dkim": []}}
    assert listen.prompt(message).splitlines()[:4] == [
        "From: Ada <ada@x.test>",
        "Authentication: NOT verified (DMARC fail, SPF pass, DKIM none)",
        "Subject: Hi", ""]
    verified = {**message, "verified_domain": "x.test"}
    assert "Authentication: verified: DMARC pass for x.test" in listen.prompt(verified)


def test_output_text_of_a_responses_answer() -> None:
    answer = {"output": [
        {"type": "reasoning", "content": [{"type": "output_text", "text": "hidden"}]},
        {"type": "message", "content": [{"type": "output_text", "text": "Hello "},
                                        {"type": "refusal", "refusal": "no"},
                                        {"type": "output_text", "text": "there"}]}]}
    assert listen.output_text(answer) == "Hello there"
    assert listen.output_text({"output_text": "direct", "output": []}) == "direct"
    assert listen.output_text(["not", "an", "object"]) == ""


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("5m", 300), ("2h", 7200),
                                               ("1.5", 1.5), ("250ms", 0.25)])
def test_durations(text: str, seconds: float) -> None:
    assert listen.duration(text) == seconds


def test_a_bad_duration_is_a_usage_error() -> None:
    with pytest.raises(click.BadParameter):
        listen.duration("soon")


def test_the_forwarded_delivery_verifies_under_the_secret(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    sent: dict[str, Any] = {}

    class Answer:
        status_code = 204

        def __enter__(self) -> Answer:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    def post(url: str, data: bytes, headers: dict[str, str], **kwargs: Any) -> Answer:
        sent.update(url=url, data=data, headers=headers, kwargs=kwargs)
        return Answer()

    monkeypatch.setattr(listen.requests, "post", post)
    event = {"type": "email.received", "id": "evt_1", "schema_version": "1",
             "created_at": "2026-01-01T00:00:00Z", "data": {"subject": "é"}}
    assert listen.forward_envelope("http://h/x", event, "whsec_s", now=lambda: 1700000000) == 204
    header = sent["headers"][signature.HEADER]
    assert signature.verify(header, "whsec_s", sent["data"], now=1700000000)
    assert not signature.verify(header, "whsec_other", sent["data"], now=1700000000)
    assert json.loads(sent["data"]) == event
    assert sent["kwargs"]["allow_redirects"] is False


def test_auto_generated_mail_is_recognised_for_no_answer() -> None:
    def view(head: bytes) -> dict[str, Any]:
        raw = head + b"From: a@x.test\r\nSubject: Hello\r\n\r\nbody\r\n"
        return {"raw_message": base64.b64encode(raw).decode(), "envelope_from": "a@x.test"}

    assert listen.automatic(view(b"")) is None
    auto = listen.automatic(view(b"Auto-Submitted: auto-replied\r\n"))
    assert auto is not None and auto.label == "auto_reply"
    listed = listen.automatic(view(b"List-Id: <l.x.test>\r\n"))
    assert listed is not None and listed.label == "list"
    assert listen.automatic({"raw_message": "not base64!"}) is None


def test_a_models_answer_is_cut_off_past_the_limit() -> None:
    class Streamed:
        def iter_content(self, size: int) -> Iterator[bytes]:
            while True:
                yield b"x" * size

    with pytest.raises(Failure, match="larger than 100000 bytes"):
        listen.bounded(Streamed(), 100000)  # type: ignore[arg-type]


def test_saved_attachment_names_stay_in_the_directory() -> None:
    assert mail.safe_name("../../etc/passwd", 0) == "passwd"
    assert mail.safe_name("..\\..\\boot.ini", 1) == "boot.ini"
    assert mail.safe_name(".bashrc", 2) == "bashrc"
    assert mail.safe_name("", 3) == "attachment-3"
    assert mail.safe_name("a\nb\x00c.txt", 4) == "abc.txt"


# -- the reconnect loop -----------------------------------------------------------------


def event(n: int) -> dict[str, Any]:
    return {"type": "email.received", "id": f"evt_{n}", "schema_version": "1",
            "created_at": "t", "data": {"message_id": f"msg_{n}"}}


class Script:
    """What each connection attempt gives: an exception to raise, or the
    items its socket returns one by one (then None, as a quiet socket)."""

    def __init__(self, attempts: list[Any]) -> None:
        self.attempts = list(attempts)
        self.urls: list[str] = []
        self.headers: list[list[str]] = []

    def socket(self, url: str, headers: list[str], timeout: float) -> Any:
        self.urls.append(url)
        self.headers.append(headers)
        step = self.attempts.pop(0)
        if isinstance(step, BaseException):
            raise step
        items: Iterator[Any] = iter(step)

        class Socket:
            def next(self, timeout: float) -> Any:
                return next(items, None)

            def close(self) -> None:
                pass

        return Socket()


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(listen.time, "sleep", slept.append)
    return slept


def run(monkeypatch: pytest.MonkeyPatch, script: Script, *, once: bool = False,
        until: float | None = 5.0) -> tuple[list[str], bool]:
    monkeypatch.setattr(listen, "EventSocket", script.socket)
    handled: list[str] = []
    done = listen.Listener(Api("https://api.test", "k", {}), "a@x.test",
                           lambda e: handled.append(e["id"]), once, until).run()
    return handled, done


def test_reconnects_with_backoff_and_handles_a_redrained_event_once(
        monkeypatch: pytest.MonkeyPatch, sleeps: list[float]) -> None:
    script = Script([OSError("refused"), OSError("refused"), OSError("refused"),
                     [event(1), Closed(1006, "")],
                     [event(1), event(2), {"no": "type"}, Closed(1000, "")]])
    handled, done = run(monkeypatch, script)
    assert handled == ["evt_1", "evt_2"] and done
    assert sleeps == [1.0, 2.0, 4.0]
    assert script.urls[0] == "wss://api.test/v1/agents/a%40x.test/ws"
    assert script.headers[0] == ["Authorization: Bearer k"]


def test_once_stops_after_the_first_event(monkeypatch: pytest.MonkeyPatch) -> None:
    handled, _ = run(monkeypatch, Script([[event(1), event(2)]]), once=True)
    assert handled == ["evt_1"]


@pytest.mark.parametrize(("closed", "exit_code"), [
    (Closed(1008, "unauthorized"), Exit.AUTH), (Closed(1008, "not_found"), Exit.NOT_FOUND),
    (Closed(4000, "replaced"), Exit.ERROR), (Closed(4003, ""), Exit.ERROR)])
def test_a_refusal_or_a_takeover_ends_the_listener(monkeypatch: pytest.MonkeyPatch,
                                                   closed: Closed, exit_code: Exit) -> None:
    with pytest.raises(Failure) as failure:
        run(monkeypatch, Script([[closed], [event(1)]]))
    assert failure.value.exit_code == exit_code


def test_until_ends_a_quiet_listener(monkeypatch: pytest.MonkeyPatch) -> None:
    handled, done = run(monkeypatch, Script([[]]), until=0.3)
    assert (handled, done) == ([], False)


# -- the help -----------------------------------------------------------------------


def test_help_shows_agent_and_operator_commands_apart() -> None:
    text = CliRunner().invoke(cli, ["--help"]).output
    agent, operator = text.split("Operator commands")
    for name in ("login", "listen", "inbox", "read", "reply", "send", "agents", "pending"):
        assert f"\n  {name} " in agent
    for name in ("serve", "db", "postfix", "doctor", "keys"):
        assert f"\n  {name} " in operator and f"\n  {name} " not in agent
