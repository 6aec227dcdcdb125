"""`e2a pending` against the real API: the whole falcon app served over HTTP
on loopback (wsgiref), a real database, real SMTP servers (aiosmtpd) as
Postfix's submit and reinjection services. The editor of `approve --edit`
is a real program ($EDITOR=sed)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from email import message_from_bytes, policy
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from click.testing import CliRunner
from hitlsupport import FRIEND, copies_of_hold, hold, message_row
from servicesupport import write_config

from e2a.api.app import create_app
from e2a.api.resources.pending import MAX_PENDING_PAGE
from e2a.cli.main import cli
from e2a.core.db import open_pool


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def api_url(hitl_cfg: Any) -> Iterator[str]:
    pool = open_pool(hitl_cfg, name="test-cli-api", wait=True)
    server: WSGIServer = make_server("127.0.0.1", 0, create_app(hitl_cfg, pool),
                                     handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        pool.close()


def e2a(api_url: str, key: str, *args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli, ["pending", "--api-url", api_url, "--api-key", key, *args],
                              env=env, catch_exceptions=False)


def released_to(hitl_reinjection: Any, rcpt: str) -> list[Any]:
    handler, _ = hitl_reinjection
    return [m for m in handler.messages if rcpt in m.rcpt_tos]


def test_list_and_show(api_url: str, hitl_client: Any, hitl_owner: Any) -> None:
    first = hold(hitl_client, hitl_owner, hitl_owner.agent, subject="First draft")
    second = hold(hitl_client, hitl_owner, hitl_owner.agent, subject="Second draft",
                  cc=["cc@example.org"])
    listed = e2a(api_url, hitl_owner.key, "list")
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert len(lines) == 2
    assert {line.split()[0] for line in lines} == {first, second}
    assert "'Second draft'" in listed.output and FRIEND in listed.output

    shown = e2a(api_url, hitl_owner.key, "show", second)
    assert shown.exit_code == 0, shown.output
    assert f"ID:       {second}" in shown.output
    assert "Subject:  Second draft" in shown.output
    assert "Cc:       cc@example.org" in shown.output
    assert "See the attached numbers." in shown.output  # the draft's body, while held


def test_approve_as_is(api_url: str, hitl_client: Any, hitl_owner: Any, hitl_cfg: Any,
                       hitl_reinjection: Any) -> None:
    message_id = hold(hitl_client, hitl_owner, hitl_owner.agent, to=["plain@example.org"])
    done = e2a(api_url, hitl_owner.key, "approve", message_id)
    assert done.exit_code == 0, done.output
    assert done.output.startswith(f"{message_id}: sent")
    assert "(edited)" not in done.output
    assert len(released_to(hitl_reinjection, "plain@example.org")) == 1
    row = message_row(hitl_cfg, message_id)
    assert (row["status"], row["edited"], row["reviewed_by_user_id"]) == (
        "sent", False, hitl_owner.user["id"])
    again = e2a(api_url, hitl_owner.key, "approve", message_id)
    assert again.exit_code != 0
    assert "409" in again.output


def test_approve_with_edit_sends_only_what_changed(api_url: str, hitl_client: Any, hitl_owner: Any,
                                                   hitl_cfg: Any, hitl_reinjection: Any) -> None:
    message_id = hold(hitl_client, hitl_owner, hitl_owner.agent, subject="Quarterly numbers",
                      to=["edit@example.org"])
    # A real editor, run by click.edit on the draft file: the subject changes.
    editor = "sed -i -e 's/^Subject: Quarterly/Subject: Yearly/'"
    done = e2a(api_url, hitl_owner.key, "approve", message_id, "--edit", env={"EDITOR": editor})
    assert done.exit_code == 0, done.output
    assert "(edited)" in done.output
    [sent] = released_to(hitl_reinjection, "edit@example.org")
    msg = message_from_bytes(sent.data, policy=policy.default)
    assert msg["Subject"] == "Yearly numbers"
    assert "See the attached numbers." in msg.get_body(("plain",)).get_content()
    row = message_row(hitl_cfg, message_id)
    assert (row["status"], row["edited"], row["subject"]) == ("sent", True, "Yearly numbers")


def test_edit_that_changes_nothing_is_no_edit(api_url: str, hitl_client: Any, hitl_owner: Any,
                                             hitl_cfg: Any) -> None:
    message_id = hold(hitl_client, hitl_owner, hitl_owner.agent, to=["same@example.org"])
    # Saved unchanged but for a trailing newline: approved as it was.
    done = e2a(api_url, hitl_owner.key, "approve", message_id, "--edit",
               env={"EDITOR": "sed -i -e '$a\\\\'"})
    assert done.exit_code == 0, done.output
    assert message_row(hitl_cfg, message_id)["edited"] is False


def test_edit_not_saved_approves_nothing(api_url: str, hitl_client: Any, hitl_owner: Any,
                                         hitl_cfg: Any) -> None:
    message_id = hold(hitl_client, hitl_owner, hitl_owner.agent)
    done = e2a(api_url, hitl_owner.key, "approve", message_id, "--edit", env={"EDITOR": "true"})
    assert done.exit_code != 0
    assert "nothing approved" in done.output
    assert message_row(hitl_cfg, message_id)["status"] == "pending_approval"


def test_reject_with_reason(api_url: str, hitl_client: Any, hitl_owner: Any, hitl_cfg: Any,
                            hitl_reinjection: Any) -> None:
    message_id = hold(hitl_client, hitl_owner, hitl_owner.agent, to=["never@example.org"])
    done = e2a(api_url, hitl_owner.key, "reject", message_id, "--reason", "wrong numbers")
    assert done.exit_code == 0, done.output
    assert done.output.strip() == f"{message_id}: rejected"
    row = message_row(hitl_cfg, message_id)
    assert (row["status"], row["rejection_reason"]) == ("rejected", "wrong numbers")
    assert released_to(hitl_reinjection, "never@example.org") == []
    assert "no messages held" in e2a(api_url, hitl_owner.key, "list").output


def test_api_errors_and_missing_key_are_one_line(api_url: str, hitl_owner: Any) -> None:
    unknown = e2a(api_url, hitl_owner.key, "show", "msg_" + "0" * 32)
    assert unknown.exit_code != 0
    assert "404" in unknown.output
    bad_key = e2a(api_url, "e2a_not_a_key", "list")
    assert bad_key.exit_code != 0 and "401" in bad_key.output
    no_key = CliRunner().invoke(cli, ["pending", "--api-url", api_url, "list"],
                                env={"E2A_API_KEY": ""})
    assert no_key.exit_code != 0 and "E2A_API_KEY" in no_key.output


def test_api_url_defaults_to_the_public_url(api_url: str, hitl_cfg: Any, hitl_client: Any,
                                            hitl_owner: Any, tmp_path: Any) -> None:
    message_id = hold(hitl_client, hitl_owner, hitl_owner.agent)
    path = write_config(hitl_cfg, tmp_path / "e2a.toml", f'[http]\npublic_url = "{api_url}/"\n')
    listed = CliRunner().invoke(cli, ["pending", "list"], catch_exceptions=False,
                                env={"E2A_CONFIG": str(path), "E2A_API_KEY": hitl_owner.key})
    assert listed.exit_code == 0, listed.output
    assert listed.output.startswith(message_id)


def test_list_reads_every_page(api_url: str, hitl_cfg: Any, hitl_client: Any,
                               hitl_owner: Any) -> None:
    first = hold(hitl_client, hitl_owner, hitl_owner.agent, subject="paged")
    held = [first, *copies_of_hold(hitl_cfg, first, MAX_PENDING_PAGE)]
    listed = e2a(api_url, hitl_owner.key, "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert sorted(m["id"] for m in json.loads(listed.output)["messages"]) == sorted(held)
