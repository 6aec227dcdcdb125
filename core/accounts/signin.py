"""Signing in to the dashboard without a password: a person asks for a
link at /dashboard/login, we mail it to the account's address (through our
Postfix, DKIM-signed like the HITL notifications), and opening it starts a
browser session.

Both tokens, the link's and the session cookie's, are 256 random bits that
only the person holds: the database keeps an HMAC of each, keyed with a
server key of its own purpose (core/crypto/serverkeys.py), so a copy of the
tables signs nobody in. A link is single-use (the redemption that sets its
used_at wins) and short-lived; a session ends at sign-out or expiry, checked
against its row on every request. CSRF tokens are derived from what binds
the form to the browser (the session's token, or before sign-in a cookie of
its own), so they need no storage and die with the session.

Requests for a link are counted per client and per address before anything
is looked up, and the answer does not depend on whether the address has an
account: the caller learns nothing about who is a user.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import psycopg

from e2a.core import ratelimit
from e2a.core.config import Config
from e2a.core.crypto import serverkeys as keys
from e2a.core.crypto.tokens import b64url
from e2a.core.outbound import notification
from e2a.core.store import sessions as session_store
from e2a.core.store import signins as signin_store
from e2a.core.store import users as user_store

LINK_TTL_SECONDS = 15 * 60
SESSION_TTL_SECONDS = 12 * 3600
LINK_PATH = "/dashboard/signin"
# secrets.token_urlsafe(32): 43 base64url characters. Anything else is
# refused before the database is asked.
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")
MAX_ADDRESS = 320  # RFC 5321's longest path

# A person asks for a link or two; a script asking for thousands (to mail
# bomb an owner, or to time the answers) is stopped per client and per address.
PER_CLIENT = ratelimit.Limit("dashboard-signin-client", 20, 15 * 60)
PER_ADDRESS = ratelimit.Limit("dashboard-signin-address", 5, 15 * 60)


class RateLimited(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many sign-in requests; retry in {retry_after} s")
        self.retry_after = retry_after


class LinkRefused(Exception):
    """Not a sign-in link we sent, or used already, or expired: one answer
    for all, so a guesser learns nothing."""


@dataclass(frozen=True)
class SignInMail:
    recipient: str
    raw: bytes

    def __repr__(self) -> str:  # the link is a credential: never in a log line
        return "SignInMail(...)"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def well_formed(token: str) -> bool:
    return bool(_TOKEN.match(token))


def token_hash(cfg: Config, purpose: str, token: str) -> bytes:
    """What the database keeps of a token of ``purpose`` (DASHBOARD_SIGN_IN
    or DASHBOARD_SESSION)."""
    return hmac.new(keys.deployment(cfg, purpose), token.encode(), hashlib.sha256).digest()


def link(cfg: Config, token: str, then: str = "") -> str:
    """The sign-in link; ``then``: the page to open once signed in."""
    query = urlencode({"token": token, **({"next": then} if then else {})})
    return f"{cfg.http.public_url.rstrip('/')}{LINK_PATH}?{query}"


def render(cfg: Config, recipient: str, url: str, *, now: datetime | None = None) -> bytes:
    """The sign-in mail (CRLF line ends)."""
    moment = now or datetime.now(UTC)
    until = (moment + timedelta(seconds=LINK_TTL_SECONDS)).strftime("%H:%M UTC")
    lines = [
        "Someone (hopefully you) asked to sign in to the e2a dashboard with this",
        "address. Open this link to sign in:",
        "",
        url,
        "",
        f"It works once, until {until}. If you did not ask for it, ignore this mail:",
        "nobody can sign in without the link.",
    ]
    return notification.owner_mail(cfg, recipient, "Your e2a sign-in link", lines, moment,
                                   from_name="e2a dashboard").as_bytes()


def request_link(conn: psycopg.Connection, cfg: Config, address: str,
                 client: str, *, then: str = "") -> SignInMail | None:
    """Count a request for a sign-in link from ``client`` (an IP) for
    ``address``, then, when that address has an account, record a new link:
    the mail to send (after the transaction commits), else None. Raises
    RateLimited, whether or not the address has an account."""
    address = address.strip().lower()[:MAX_ADDRESS]
    # The address's counter keys on a digest: rate_limits is no list of
    # who tried to sign in.
    refused = ratelimit.first_refusal(conn, [
        (PER_CLIENT, client),
        (PER_ADDRESS, hashlib.sha256(address.encode()).hexdigest()[:32])])
    if refused is not None:
        raise RateLimited(refused[1].retry_after_seconds)
    user = user_store.user_by_email(conn, address) if address else None
    if user is None:
        return None
    token = new_token()
    signin_store.insert(conn, token_hash(cfg, keys.DASHBOARD_SIGN_IN, token), user["id"],
                        LINK_TTL_SECONDS)
    return SignInMail(user["email"], render(cfg, user["email"], link(cfg, token, then)))


def send(conn: psycopg.Connection, cfg: Config, mail: SignInMail) -> str:
    """Hand the sign-in mail to Postfix; its queue id. Raises ReinjectError."""
    return notification.deliver(conn, cfg, mail.recipient, mail.raw, {"kind": "sign-in"})


@dataclass(frozen=True)
class Session:
    token: str  # the cookie's value
    user_id: str

    def __repr__(self) -> str:
        return f"Session(user_id={self.user_id!r})"


def redeem(conn: psycopg.Connection, cfg: Config, link_token: str) -> Session:
    """Use up the sign-in link and start a session for its user. Raises
    LinkRefused."""
    if not well_formed(link_token):
        raise LinkRefused
    row = signin_store.redeem(conn, token_hash(cfg, keys.DASHBOARD_SIGN_IN, link_token))
    if row is None:
        raise LinkRefused
    token = new_token()
    session_store.insert(conn, token_hash(cfg, keys.DASHBOARD_SESSION, token), row["user_id"],
                         SESSION_TTL_SECONDS)
    return Session(token, row["user_id"])


def signed_in(conn: psycopg.Connection, cfg: Config, cookie: str) -> dict[str, str] | None:
    """The user (user_id, email, name) of a live session, None otherwise."""
    if not well_formed(cookie):
        return None
    return session_store.live(conn, token_hash(cfg, keys.DASHBOARD_SESSION, cookie))


def sign_out(conn: psycopg.Connection, cfg: Config, cookie: str) -> None:
    if well_formed(cookie):
        session_store.end(conn, token_hash(cfg, keys.DASHBOARD_SESSION, cookie))


def csrf_token(cfg: Config, binding: str) -> str:
    """The CSRF token of the forms shown to the browser bound by ``binding``
    (its session token, or its pre-sign-in cookie)."""
    mac = hmac.new(keys.deployment(cfg, keys.DASHBOARD_CSRF), binding.encode(),
                   hashlib.sha256).digest()
    return b64url(mac)


def csrf_valid(cfg: Config, binding: str, given: str) -> bool:
    if not well_formed(binding) or not given:
        return False
    return hmac.compare_digest(csrf_token(cfg, binding).encode(), given.encode())
