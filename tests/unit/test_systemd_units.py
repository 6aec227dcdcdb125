"""The systemd units: one per service, notify, their own user, sandboxed, and
matching what the services and the package expect of them."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from unitfiles import SERVICES, UNIT_DIR, parse, service

from e2a.core import config

POSTFIX_SIDE = ("milter", "policy")
SANDBOXING = {
    "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
    "PrivateTmp": "yes", "PrivateDevices": "yes", "CapabilityBoundingSet": "",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "SystemCallArchitectures": "native", "LockPersonality": "yes",
    "RestrictSUIDSGID": "yes", "ProtectKernelTunables": "yes",
}


def test_one_unit_per_service_and_a_target() -> None:
    assert sorted(p.name for p in UNIT_DIR.iterdir()) == sorted(
        [f"e2a-{name}.service" for name in SERVICES] + ["e2a.target", "e2a-stop.service"])
    assert parse(UNIT_DIR / "e2a.target")["Install"]["WantedBy"] == ["multi-user.target"]


def test_stopping_the_target_waits_for_every_service() -> None:
    """e2a-stop.service stops before the target and stops the services itself
    (tests/system/test_systemd.py watches it work)."""
    unit = parse(UNIT_DIR / "e2a-stop.service")
    assert unit["Unit"]["PartOf"] == ["e2a.target"] and unit["Unit"]["After"] == ["e2a.target"]
    assert unit["Install"]["WantedBy"] == ["e2a.target"]
    stop = unit["Service"]["ExecStop"][0]
    assert "--job-mode=ignore-dependencies" in stop
    assert all(f"e2a-{name}.service" in stop for name in SERVICES)
    assert "grep -qw stop" in stop  # a restart of the target is left to the restart jobs


@pytest.mark.parametrize("name", SERVICES)
def test_service_runs_its_command_as_e2a_and_notifies(name: str) -> None:
    svc = service(name)
    assert svc["Type"] == ["notify"]
    assert svc["User"] == ["e2a"] and svc["Group"] == ["e2a"]
    assert shlex.split(svc["ExecStart"][0]) == ["/usr/bin/e2a", "serve", name]
    # Not started at all while the configuration lacks its secret.
    assert svc["ExecCondition"] == ["/usr/bin/e2a config check"]
    assert svc["EnvironmentFile"] == ["-/etc/default/e2a"]
    unit = parse(UNIT_DIR / f"e2a-{name}.service")
    assert unit["Unit"]["PartOf"] == ["e2a.target"]
    assert unit["Install"]["WantedBy"] == ["e2a.target"]


@pytest.mark.parametrize("name", SERVICES)
def test_service_is_sandboxed(name: str) -> None:
    svc = service(name)
    for key, value in SANDBOXING.items():
        assert svc.get(key) == [value], key


@pytest.mark.parametrize("name", SERVICES)
def test_only_the_postfix_side_writes_and_starts_before_postfix(name: str,
                                                               tmp_path: Path) -> None:
    svc, unit = service(name), parse(UNIT_DIR / f"e2a-{name}.service")["Unit"]
    if name in POSTFIX_SIDE:
        empty = tmp_path / "e2a.toml"
        empty.write_text("")
        defaults = config.load(empty, env={"E2A_HMAC_SECRET": "x" * 32})
        listen = defaults.get(f"{name}.listen")
        # The default socket lives in the one directory the unit may write.
        assert svc["ReadWritePaths"] == [str(Path(listen.removeprefix("unix:")).parent)]
        assert "postfix.service" in unit["Before"][0].split()
    else:
        assert "ReadWritePaths" not in svc
        assert "Before" not in unit


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify_finds_nothing(tmp_path: Path) -> None:
    """systemd's own reading of the units, /usr/bin/e2a swapped for a stand-in
    (verify insists the command exists)."""
    fake = tmp_path / "e2a"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    units = []
    for path in UNIT_DIR.iterdir():
        copy = tmp_path / path.name
        copy.write_text(path.read_text().replace("/usr/bin/e2a", str(fake)))
        units.append(str(copy))
    done = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True,
                          text=True, cwd=tmp_path, timeout=60, check=False)
    assert done.returncode == 0 and done.stderr == "", done.stderr


@pytest.mark.parametrize("name", SERVICES)
def test_a_failing_service_restarts_then_stays_failed(name: str) -> None:
    """Restart=on-failure, but within systemd's start limit: 5 starts in 2
    minutes at most (RestartSec=2s alone would never reach the default 5 in 10 s)."""
    svc, unit = service(name), parse(UNIT_DIR / f"e2a-{name}.service")["Unit"]
    assert svc["Restart"] == ["on-failure"]
    interval, burst = int(unit["StartLimitIntervalSec"][0]), int(unit["StartLimitBurst"][0])
    restart = float(svc["RestartSec"][0].removesuffix("s"))
    assert burst * restart < interval


@pytest.mark.parametrize("name", SERVICES)
def test_no_service_needs_privileged_system_calls(name: str) -> None:
    """systemd makes each service its user (User=); nothing of ours (gunicorn
    included, see e2a.api.server.keep_process_owner) calls setuid itself."""
    assert service(name)["SystemCallFilter"] == ["@system-service", "~@privileged"]
