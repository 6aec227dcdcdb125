"""Postfix configured the way Debian 12 configures it, in a directory of our own.

``write_stock`` writes main.cf and master.cf as the postfix package's postinst
does for "Internet Site" (from the files it ships in /usr/share/postfix):
master.cf's smtpd chrooted, main.cf a handful of ``name = value`` lines.
``make_private`` then makes that a Postfix we may start (``postfix -c``): its
own queue and log under one directory, listening on a loopback port instead
of 25. The machine's /etc/postfix is never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

SHARE = Path("/usr/share/postfix")
SNAKEOIL_KEY = Path("/etc/ssl/private/ssl-cert-snakeoil.key")


def postconf(etc: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}
    return subprocess.run(["postconf", "-c", str(etc), *args], check=True,
                          capture_output=True, text=True, env=env).stdout


def write_stock(etc: Path, hostname: str) -> None:
    etc.mkdir(parents=True, exist_ok=True)
    main = (SHARE / "main.cf.debian").read_text()
    if SNAKEOIL_KEY.exists():
        main += (SHARE / "main.cf.tls").read_text()
    (etc / "main.cf").write_text(main)
    shutil.copyfile(SHARE / "master.cf.dist", etc / "master.cf")
    postconf(etc, "-e",
             "smtpd_relay_restrictions=permit_mynetworks permit_sasl_authenticated "
             "defer_unauth_destination",
             f"myhostname={hostname}",
             "alias_maps=hash:/etc/aliases",
             "alias_database=hash:/etc/aliases",
             "mydestination=$myhostname, localhost.localdomain, localhost",
             "relayhost=",
             "mynetworks=127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128",
             "mailbox_size_limit=0",
             "recipient_delimiter=+",
             "inet_interfaces=all",
             "inet_protocols=all")


def make_private(etc: Path, root: Path, *, smtp_port: int, relay_domains: str,
                 relayhost: str) -> Path:
    """The stock configuration in ``etc`` as a private instance under ``root``;
    returns its queue directory (root-owned, as Postfix insists)."""
    spool, log = root / "spool", root / "log"
    for path in (root, spool, log):
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o755)
    postconf(etc, "-e",
             f"queue_directory={spool}",
             f"data_directory={root / 'data'}",
             f"maillog_file={log / 'maillog'}",
             f"maillog_file_prefixes={log}",
             "inet_interfaces=127.0.0.1",
             "inet_protocols=ipv4",
             # No aliases database on this machine, and nothing is delivered locally.
             "alias_maps=",
             "alias_database=",
             f"relay_domains={relay_domains}",
             f"relayhost={relayhost}",
             "smtpd_tls_security_level=none",
             "smtp_tls_security_level=none")
    # Debian's smtpd, chroot and all, moved from port 25 to a loopback port.
    postconf(etc, "-F", f"smtp/inet/service=127.0.0.1:{smtp_port}")
    return spool


def postfix(etc: Path, command: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}
    return subprocess.run(["postfix", "-c", str(etc), command], check=False,
                          capture_output=True, text=True, env=env, cwd="/", timeout=120)
