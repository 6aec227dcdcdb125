"""The sandbox's own decisions, without starting anything: ports, config, examples."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from sandbox.stack import Access, Ports, Sandbox


def test_default_ports_are_the_documented_ones_and_never_25() -> None:
    ports = Ports()
    assert (ports.smtp, ports.api, ports.dns, ports.capture) == (2525, 8080, 5353, 2526)
    assert 25 not in vars(ports).values()


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = Ports.free()
    values = list(vars(ports).values())
    assert len(set(values)) == len(values)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", ports.dns))  # DNS needs UDP as well as TCP


def test_config_points_every_service_at_the_sandbox(tmp_path: Path) -> None:
    ports = Ports.free()
    sandbox = Sandbox(tmp_path, ports)
    sandbox.write_config()
    cfg = sandbox.config()
    assert cfg.database.url == sandbox.cluster.url
    assert cfg.http.listen == f"127.0.0.1:{ports.api}"
    assert cfg.http.public_url == f"http://127.0.0.1:{ports.api}"
    assert cfg.milter.listen == f"unix:{tmp_path.resolve()}/run/milter.sock"
    assert cfg.policy.listen == f"unix:{tmp_path.resolve()}/run/policy.sock"
    assert cfg.filter.listen == f"127.0.0.1:{ports.filter}"
    assert cfg.filter.reinject == f"127.0.0.1:{ports.reinject}"
    assert cfg.submit.address == f"127.0.0.1:{ports.submit}"
    assert cfg.dns.resolver == f"127.0.0.1:{ports.dns}"
    assert (cfg.mail.hostname, cfg.mail.shared_domain) == ("mx.sandbox.test",
                                                          "agents.sandbox.test")
    assert len(cfg.secrets.hmac_secret) == 64
    assert sandbox.config_path.stat().st_mode & 0o077 == 0  # the secret is not for others

    secret = cfg.secrets.hmac_secret
    Sandbox(tmp_path, Ports.free()).write_config()
    assert Sandbox(tmp_path).config().secrets.hmac_secret == secret  # kept across runs


def test_postfix_relays_to_the_capture_server(tmp_path: Path) -> None:
    ports = Ports.free()
    postfix = Sandbox(tmp_path, ports).postfix
    assert postfix.relayhost == f"[127.0.0.1]:{ports.capture}"
    assert postfix.smtp_port == ports.smtp
    assert postfix.relay_domains == ["sandbox.test"]
    assert postfix.main_cf_params()["relay_domains"] == (
        f"sandbox.test, socketmap:unix:{tmp_path.resolve()}/run/socketmap.sock:relay_domains")
    assert postfix.milter_socket == f"unix:{tmp_path.resolve()}/run/milter.sock"


def test_ports_of_a_sandbox_are_remembered(tmp_path: Path) -> None:
    ports = Ports.free()
    (tmp_path / "ports.json").write_text(json.dumps(vars(ports)))
    assert Sandbox(tmp_path).ports == ports
    # A new sandbox takes the documented ports, each unless something else
    # (another sandbox, a test's server) listens there right now.
    fresh = Sandbox(tmp_path / "fresh").ports
    for name, documented in vars(Ports()).items():
        assert getattr(fresh, name) == documented or _taken(documented), name


def _taken(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def test_examples_carry_the_key_and_the_encoded_agent() -> None:
    access = Access(api_url="http://127.0.0.1:8080", api_key="e2a_" + "0" * 64,
                    user_email="you@sandbox.test", agent_email="hello@agents.sandbox.test",
                    smtp_host="127.0.0.1", smtp_port=2525, config="/x/e2a.toml",
                    capture_dir="/x/capture", maillog="/x/maillog", log_dir="/x/log")
    assert "--server 127.0.0.1:2525" in access.send_example
    assert "--to hello@agents.sandbox.test" in access.send_example
    assert f"Bearer {access.api_key}" in access.read_example
    assert access.read_example.endswith(
        "http://127.0.0.1:8080/v1/agents/hello%40agents.sandbox.test/messages")
    assert access.legacy_read_example.endswith(
        "http://127.0.0.1:8080/api/v1/agents/hello%40agents.sandbox.test/messages")
    assert access.sdk_example.startswith(
        f"E2A_API_URL=http://127.0.0.1:8080 E2A_API_KEY={access.api_key} python3 -c ")
    assert 'messages.list("hello@agents.sandbox.test"' in access.sdk_example
    assert access.to_json()["examples"] == {
        "send": access.send_example, "read": access.read_example,
        "sdk": access.sdk_example, "read_legacy": access.legacy_read_example}


def test_metrics_listeners_have_ports_of_their_own(tmp_path: Path) -> None:
    ports = Ports.free()
    sandbox = Sandbox(tmp_path, ports)
    sandbox.write_config()
    cfg = sandbox.config()
    assert (cfg.metrics.milter_listen, cfg.metrics.policy_listen, cfg.metrics.filter_listen,
            cfg.metrics.worker_listen) == tuple(
        f"127.0.0.1:{p}" for p in (ports.milter_metrics, ports.policy_metrics,
                                   ports.filter_metrics, ports.worker_metrics))


def test_pick_keeps_free_preferred_ports_and_replaces_taken_ones() -> None:
    """Two sandboxes on one machine: the second gets other ports, metrics too."""
    first = Ports.free()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", first.milter_metrics))
        taken.listen()
        second = Ports.pick(first)
    assert second.milter_metrics != first.milter_metrics
    assert second.api == first.api and second.smtp == first.smtp
    values = list(vars(second).values())
    assert len(set(values)) == len(values)


def test_a_new_sandbox_prefers_the_documented_ports(tmp_path: Path) -> None:
    ports = Sandbox(tmp_path).ports
    for name, documented in vars(Ports()).items():
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", documented))
            except OSError:
                continue  # taken here: the sandbox took another
        assert getattr(ports, name) == documented, name
