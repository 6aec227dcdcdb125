"""`e2a serve policy` as the real subprocess."""

from __future__ import annotations

import shutil
import socket
import tempfile
from pathlib import Path

from servicesupport import serve, terminate, write_config

from e2a.core.accounts import registration as accounts
from e2a.core.db import single_connection


def test_serve_policy_listens_answers_and_stops_on_sigterm(cfg, tmp_path):
    with single_connection(cfg) as conn:
        accounts.seed_shared_domain(conn, cfg)
    sockdir = Path(tempfile.mkdtemp(prefix="e2a-pols-"))
    try:
        path = sockdir / "policy.sock"
        conf = write_config(cfg, tmp_path / "e2a.toml", f'[policy]\nlisten = "unix:{path}"\n'
                            f'socketmap_listen = "unix:{sockdir / "socketmap.sock"}"\n')
        line = f"policy listening on unix:{path}"
        with serve("policy", conf, tmp_path / "policy.log", line) as proc, \
                socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(str(path))
            sock.sendall(b"request=smtpd_access_policy\nprotocol_state=RCPT\n"
                         b"recipient=nobody-at-all@agents.test.example\n\n")
            assert sock.recv(4096).startswith(b"action=550 5.1.1 ")
            with socket.socket(socket.AF_UNIX) as lookup:
                lookup.settimeout(10)
                lookup.connect(str(sockdir / "socketmap.sock"))
                request = f"relay_domains {cfg.mail.shared_domain}".encode()
                lookup.sendall(b"%d:%s," % (len(request), request))
                assert lookup.recv(4096).startswith(b"%d:OK " % (len(request) - 11))
            # An idle client connection must not hold up the stop.
            code, took = terminate(proc)
        assert code == 0
        assert took < 5
        assert not path.exists()
        assert not (sockdir / "socketmap.sock").exists()
        log = (tmp_path / "policy.log").read_text()
        assert log.count("listening on") == 1
    finally:
        shutil.rmtree(sockdir, ignore_errors=True)
