"""The Postfix fragments render, refuse missing or unsafe values, and parse."""

from __future__ import annotations

import pytest

from e2a import postfix

VALUES = {
    "milter_socket": "unix:/run/e2a/milter.sock",
    "policy_socket": "unix:/run/e2a/policy.sock",
    "socketmap_socket": "unix:/run/e2a/socketmap.sock",
    "message_size_limit": "10485760",
    "reinject_address": "127.0.0.1:10026",
    "submit_address": "127.0.0.1:10027",
    "filter_host": "127.0.0.1",
    "filter_port": "10025",
    "own_daemon_name": "e2a-reinject",
    "chroot": "n",
    "after_filter": "",
}


def test_every_placeholder_is_filled() -> None:
    for name in ("main.cf", "master.cf"):
        text = postfix.render(name, **VALUES)
        assert "{{" not in text and "}}" not in text


def test_postfix_macro_braces_pass_through() -> None:
    params = postfix.main_cf_params(**VALUES)
    assert "{daemon_name}" in params["milter_connect_macros"]
    assert "{client_addr}" in params["milter_end_of_data_macros"]


def test_missing_value_names_it() -> None:
    values = dict(VALUES)
    del values["policy_socket"]
    with pytest.raises(postfix.FragmentError, match="policy_socket"):
        postfix.render("main.cf", **values)


def test_value_with_newline_is_refused() -> None:
    values = dict(VALUES, milter_socket="unix:/x\nsmtpd_milters = inet:evil:1")
    with pytest.raises(postfix.FragmentError, match="milter_socket"):
        postfix.main_cf_params(**values)


def test_placeholders_lists_what_a_fragment_needs() -> None:
    assert postfix.placeholders("main.cf") == {"milter_socket", "policy_socket",
                                               "socketmap_socket", "message_size_limit",
                                               "filter_host", "filter_port"}
    assert "filter_port" in postfix.placeholders("master.cf")


def test_main_cf_params() -> None:
    params = postfix.main_cf_params(**VALUES)
    assert params["smtpd_milters"] == "unix:/run/e2a/milter.sock"
    # Postfix's own bounces reach the milter too (they carry no smtpd).
    assert params["non_smtpd_milters"] == "unix:/run/e2a/milter.sock"
    assert params["internal_mail_filter_classes"] == "bounce"
    assert params["milter_default_action"] == "tempfail"
    assert params["milter_protocol"] == "6"
    assert params["smtpd_recipient_restrictions"] == (
        "check_policy_service unix:/run/e2a/policy.sock")
    assert params["smtpd_policy_service_default_action"].startswith("451 4.3.5 ")
    assert params["message_size_limit"] == "10485760"
    # Mail by SMTP or sendmail meets the filter too (HITL holds every path);
    # the reinjection service turns it off again.
    assert params["content_filter"] == "e2a-filter:[127.0.0.1]:10025"
    assert params["milter_end_of_data_macros"].split()[0] == "i"
    # At end of data Postfix's cleanup would report its own daemon name.
    assert "{daemon_name}" not in params["milter_end_of_data_macros"]


def test_parse_main_cf_joins_continuation_lines_and_skips_comments() -> None:
    text = "# comment\n\na = 1\nb = x,\n    y\n  # indented comment\nc =\n"
    assert postfix.parse_main_cf(text) == {"a": "1", "b": "x, y", "c": ""}


def test_parse_main_cf_refuses_garbage() -> None:
    with pytest.raises(postfix.FragmentError):
        postfix.parse_main_cf("not a parameter\n")


def test_master_cf_services() -> None:
    services = postfix.master_cf_services(**VALUES)
    assert set(services) == {"127.0.0.1:10026/inet", "127.0.0.1:10027/inet",
                             "e2a-filter/unix"}
    reinject = services["127.0.0.1:10026/inet"].split()
    assert reinject[:8] == ["127.0.0.1:10026", "inet", "n", "-", "n", "-", "-", "smtpd"]
    assert "content_filter=" in reinject
    assert "smtpd_milters=unix:/run/e2a/milter.sock" in reinject
    assert "milter_macro_daemon_name=e2a-reinject" in reinject
    assert "smtpd_authorized_xforward_hosts=127.0.0.0/8" in reinject
    # Address mappings must run once, after the filter: never disabled here.
    assert not any("no_address_mappings" in field for field in reinject)
    submit = services["127.0.0.1:10027/inet"].split()
    assert "content_filter=e2a-filter:[127.0.0.1]:10025" in submit
    assert "receive_override_options=no_address_mappings" in submit
    assert "smtpd_milters=" in submit
    transport = services["e2a-filter/unix"].split()
    assert transport[:8] == ["e2a-filter", "unix", "-", "-", "n", "-", "10", "smtp"]
    assert "smtp_send_xforward_command=yes" in transport
    assert "disable_mime_output_conversion=yes" in transport


def test_reinjection_hands_on_to_the_operators_own_filter() -> None:
    services = postfix.master_cf_services(**dict(VALUES, after_filter="amavis:[::1]:10024"))
    assert "content_filter=amavis:[::1]:10024" in services["127.0.0.1:10026/inet"].split()


def test_chroot_is_a_parameter() -> None:
    services = postfix.master_cf_services(**dict(VALUES, chroot="y"))
    assert all(entry.split()[4] == "y" for entry in services.values())
