"""Plans for install and uninstall, on configurations held in memory."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from e2a.cli.postfix.plan import (
    Plan,
    State,
    Wiring,
    WiringError,
    chained_filter,
    plan_install,
    plan_uninstall,
    postfix_address,
    service_keys,
    smtpd_chroot,
    wiring,
)
from e2a.core import config

DEFAULTS = {
    "smtpd_milters": "", "smtpd_recipient_restrictions": "",
    "milter_connect_macros": "j {daemon_name} {daemon_addr} v _",
    "milter_mail_macros": "i {auth_type} {auth_authen} {auth_author} {mail_addr} "
                          "{mail_host} {mail_mailer}",
    "milter_end_of_data_macros": "i", "milter_protocol": "6",
    "milter_default_action": "tempfail", "disable_mime_output_conversion": "no",
    "message_size_limit": "10240000",
    "smtpd_policy_service_default_action": "451 4.3.5 Server configuration problem",
}
STOCK_SERVICES = {
    "smtp/inet": "smtp inet n - y - - smtpd",
    "pickup/unix": "pickup unix n - y 60 1 pickup",
}


@pytest.fixture
def cfg(tmp_path: Path) -> config.Config:
    path = tmp_path / "e2a.toml"
    path.write_text("")
    return config.load(path, env={"E2A_HMAC_SECRET": "s" * 40})


def ours(cfg: config.Config, queue: str = "/var/spool/postfix") -> Wiring:
    return wiring(cfg, queue, "y")


def applied(state: State, plan: Plan) -> State:
    """The state after ``plan``, as postconf would leave it."""
    explicit, services = dict(state.explicit), dict(state.services)
    for change in plan.changes:
        table = explicit if change.file == "main.cf" else services
        if change.target is None:
            table.pop(change.name, None)
        else:
            table[change.name] = change.target
    return State(explicit=explicit, defaults=state.defaults, services=services)


def stock(**explicit: str) -> State:
    return State(explicit=explicit, defaults=DEFAULTS, services=dict(STOCK_SERVICES))


def test_sockets_in_the_queue_directory_are_named_relative_to_it() -> None:
    queue = "/var/spool/postfix"
    assert postfix_address("unix:/var/spool/postfix/e2a/milter.sock", queue) == (
        "unix:e2a/milter.sock")
    assert postfix_address("unix:/run/e2a/milter.sock", queue) == "unix:/run/e2a/milter.sock"
    assert postfix_address("127.0.0.1:9999", queue) == "inet:127.0.0.1:9999"


def test_our_smtpd_services_copy_the_public_smtpds_chroot() -> None:
    assert smtpd_chroot(STOCK_SERVICES) == "y"
    moved = {"127.0.0.1:2525/inet": "127.0.0.1:2525 inet n - n - - smtpd"}
    assert smtpd_chroot(moved) == "n"
    assert smtpd_chroot({"x/inet": "x inet n - - - - smtpd"}) == "n"  # "-": Postfix 3's n


def test_install_on_stock_debian_adds_only_what_differs(cfg: config.Config) -> None:
    plan = plan_install(stock(), ours(cfg), None)
    changed = {c.name: c.target for c in plan.changes}
    assert changed["smtpd_milters"] == "unix:e2a/milter.sock"
    assert changed["smtpd_recipient_restrictions"] == (
        "check_policy_service unix:e2a/policy.sock")
    # Postfix's defaults already say so: main.cf stays without them.
    assert "milter_default_action" not in changed and "milter_protocol" not in changed
    assert set(service_keys(cfg)) <= set(changed)
    assert plan.record is not None and plan.record["params"]["smtpd_milters"]["before"] is None


def test_second_install_changes_nothing(cfg: config.Config) -> None:
    first = plan_install(stock(), ours(cfg), None)
    second = plan_install(applied(stock(), first), ours(cfg), first.record)
    assert second.changes == [] and second.record == first.record


def test_operators_values_are_kept_and_given_back(cfg: config.Config) -> None:
    before = stock(smtpd_milters="inet:127.0.0.1:8891",
                   smtpd_recipient_restrictions="permit_mynetworks, reject_unauth_destination",
                   milter_default_action="accept")
    plan = plan_install(before, ours(cfg), None)
    after = applied(before, plan)
    assert after.explicit["smtpd_milters"] == "inet:127.0.0.1:8891 unix:e2a/milter.sock"
    assert after.explicit["smtpd_recipient_restrictions"] == (
        "check_policy_service unix:e2a/policy.sock, permit_mynetworks, "
        "reject_unauth_destination")
    assert after.explicit["milter_default_action"] == "tempfail"
    assert plan.record is not None
    undone = applied(after, plan_uninstall(after, plan.record))
    assert undone.explicit == before.explicit and undone.services == before.services


def test_a_changed_configuration_swaps_our_old_values(cfg: config.Config,
                                                      tmp_path: Path) -> None:
    first = plan_install(stock(smtpd_milters="inet:x:1"), ours(cfg), None)
    state = applied(stock(smtpd_milters="inet:x:1"), first)
    path = tmp_path / "moved.toml"
    path.write_text('[milter]\nlisten = "unix:/var/spool/postfix/e2a2/m.sock"\n'
                    '[filter]\nreinject = "127.0.0.1:10036"\n')
    moved = config.load(path, env={"E2A_HMAC_SECRET": "s" * 40})
    second = plan_install(state, ours(moved), first.record)
    after = applied(state, second)
    assert after.explicit["smtpd_milters"] == "inet:x:1 unix:e2a2/m.sock"
    assert "127.0.0.1:10026/inet" not in after.services
    assert "127.0.0.1:10036/inet" in after.services
    assert second.record is not None
    undone = applied(after, plan_uninstall(after, second.record))
    assert undone.explicit == {"smtpd_milters": "inet:x:1"}
    assert undone.services == STOCK_SERVICES


def test_someone_elses_service_on_our_address_stops_install(cfg: config.Config) -> None:
    state = stock()
    state.services["127.0.0.1:10026/inet"] = "127.0.0.1:10026 inet n - n - - smtpd"
    with pytest.raises(WiringError, match="not e2a's"):
        plan_install(state, ours(cfg), None)


def test_a_copy_of_our_service_by_hand_is_left_to_its_owner(cfg: config.Config) -> None:
    state = stock()
    key = service_keys(cfg)[0]
    state.services[key] = ours(cfg).services[key]
    plan = plan_install(state, ours(cfg), None)
    assert key not in {c.name for c in plan.changes}
    assert plan.record is not None and key not in plan.record["services"]


def test_uninstall_keeps_what_the_operator_changed_since(cfg: config.Config) -> None:
    plan = plan_install(stock(), ours(cfg), None)
    after = applied(stock(), plan)
    assert plan.record is not None
    record = copy.deepcopy(plan.record)
    after.explicit["smtpd_milters"] += ", inet:127.0.0.1:8891"  # a milter of theirs
    after.explicit["message_size_limit"] = "50000000"            # their own limit
    undo = plan_uninstall(after, record)
    undone = applied(after, undo)
    assert undone.explicit["smtpd_milters"] == "inet:127.0.0.1:8891"
    assert undone.explicit["message_size_limit"] == "50000000"
    assert any("message_size_limit" in note for note in undo.notes)
    assert "smtpd_recipient_restrictions" not in undone.explicit


AMAVIS = "smtp-amavis:[127.0.0.1]:10024"


def reinject_filter(cfg: config.Config, state: State) -> str:
    return chained_filter(state.services[ours(cfg).reinject_key])


def test_the_operators_content_filter_runs_after_ours(cfg: config.Config) -> None:
    before = stock(content_filter=AMAVIS)
    plan = plan_install(before, ours(cfg), None)
    after = applied(before, plan)
    assert after.explicit["content_filter"] == "e2a-filter:[127.0.0.1]:10025"
    assert reinject_filter(cfg, after) == AMAVIS  # our reinjection hands on to amavis
    assert plan.record is not None
    again = plan_install(after, ours(cfg), plan.record)
    assert again.changes == [] and again.record == plan.record
    undone = applied(after, plan_uninstall(after, plan.record))
    assert undone.explicit == before.explicit and undone.services == before.services


def test_without_a_content_filter_of_theirs_our_reinjection_has_none(
        cfg: config.Config) -> None:
    after = applied(stock(), plan_install(stock(), ours(cfg), None))
    assert "-o content_filter= " in after.services[ours(cfg).reinject_key]
    assert reinject_filter(cfg, after) == ""


def test_ours_already_in_main_cf_is_never_chained_to_itself(cfg: config.Config) -> None:
    before = stock(content_filter="e2a-filter:[127.0.0.1]:10025")
    after = applied(before, plan_install(before, ours(cfg), None))
    assert reinject_filter(cfg, after) == ""


def test_an_earlier_unchained_install_is_chained_on_reinstall(cfg: config.Config) -> None:
    before = stock(content_filter=AMAVIS)
    first = plan_install(before, ours(cfg), None)
    assert first.record is not None
    key = ours(cfg).reinject_key
    unchained = ours(cfg).services[key]  # what install wrote before it chained
    first.record["services"][key]["after"] = unchained
    state = applied(before, first)
    state.services[key] = unchained
    second = plan_install(state, ours(cfg), first.record)
    assert [c.name for c in second.changes] == [key]
    after = applied(state, second)
    assert reinject_filter(cfg, after) == AMAVIS
    assert second.record is not None
    undone = applied(after, plan_uninstall(after, second.record))
    assert undone.explicit == before.explicit and undone.services == before.services


def test_a_content_filter_with_spaces_cannot_be_chained(cfg: config.Config) -> None:
    with pytest.raises(WiringError, match="spaces"):
        plan_install(stock(content_filter="smtp-amavis:[127.0.0.1]:10024 x"),
                     ours(cfg), None)
