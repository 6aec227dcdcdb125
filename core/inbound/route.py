"""Routing one received message to its consumers, in one place: the milter
only translates libmilter's calls into a ``Received`` and the ``Routed``
answer back into milter actions.

The consumers, in order: our VERP return paths (bounces of our own mail,
core/inbound/bounces.py), the reply addresses of owner notifications
(approve or reject by reply, core/inbound/replyapproval.py), then the agents
among the recipients (core/inbound/inbox.py), after SPF, DKIM and DMARC.
Headers forged in our name (core/inbound/forged.py) are left out of what is
stored and attested, and deleted from what Postfix passes on.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from psycopg_pool import ConnectionPool

from e2a.core import mailauth
from e2a.core.config import Config
from e2a.core.inbound import bounces, forged, inbox, replyapproval, screening
from e2a.core.mail import headers, rebuild
from e2a.core.mailauth.verdict import Verdict
from e2a.core.mta import verp
from e2a.core.net import addresses
from e2a.core.outbound import decision as outbound
from e2a.core.outbound import unsubscribe
from e2a.core.protection import config as protection
from e2a.core.runtime import metrics
from e2a.core.store import agents as agent_store

# The milter's logger: these lines are the milter's story of the message.
log = logging.getLogger("e2a.milter")

AR = "Authentication-Results"


@dataclass(frozen=True)
class Received:
    envelope: inbox.Envelope  # recipients: addr-specs, in RCPT order
    header_fields: list[tuple[bytes, bytes]]  # (name, value) as libmilter handed them over
    body: bytes
    leading_space: bool  # whether the values keep their leading space (rebuild.message)


@dataclass(frozen=True)
class Routed:
    # Recipients (lowercase) a consumer took: Postfix must not deliver to them.
    consumed: set[str] = field(default_factory=set)
    # Positions in header_fields of the headers forged in our name, to delete.
    forged: list[int] = field(default_factory=list)
    # Refused for good (550 5.7.1) with this text; nothing consumed.
    refusal: str = ""


def consume(pool: ConnectionPool, cfg: Config, mail: Received,
            on_verdict: Callable[[Verdict], None] = lambda _verdict: None) -> Routed:
    """Hand ``mail`` to its consumers; what the MTA must do with the rest.
    ``on_verdict`` hears the authentication result as soon as there is one
    (before storing, so a failure after it is still counted under it)."""
    env = mail.envelope
    recipients = list(env.recipients)  # canonical (addresses.mailbox)
    # The bytes as they came: what DKIM checks, what bounces and replies read.
    received = rebuild.message(mail.header_fields, mail.body, mail.leading_space)
    bounced = _consume_bounces(pool, cfg, received, recipients, env.queue_id)
    bounced |= _consume_replies(pool, cfg, received, env, recipients)
    bounced |= unsubscribe.consume(pool, cfg, recipients)
    fakes = [i for i, (name, value) in enumerate(mail.header_fields)
             if forged.claims_ours(name, value, cfg.mail.authserv_id)]
    if all(r in bounced for r in recipients):
        # Every recipient taken (a DSN to our return path, say): no agent
        # among them, none of it leaves; nobody to look up.
        return Routed(consumed=bounced, forged=fakes)
    # What we store and attest to leaves out the headers forged in our name.
    drop = set(fakes)
    kept = received if not drop else rebuild.message(
        [h for i, h in enumerate(mail.header_fields) if i not in drop], mail.body,
        mail.leading_space)
    msg = headers.parse(kept)
    wanted = {r for r in recipients if r not in bounced}
    # Our own path: the sender is known by its outbound row instead.
    identities = [] if env.own_path else outbound.sender_identities(env.mail_from, msg)
    with pool.connection() as conn:
        # Recipients and senders in one lookup: one statement per message.
        found = {a["email"]: a for a in agent_store.agents_by_emails(
            conn, [*wanted, *identities], headers.thread_refs(msg))}
        # Whose reinjected mail it is matters to its agent recipients only.
        sent_by = outbound.reinjected_sender(conn, env.mail_from, msg, verp.key(cfg)) \
            if env.own_path and any(r in found for r in wanted) else None
    agents = [a for email, a in found.items() if email in wanted]
    senders = [found[i] for i in identities if i in found]
    if senders and not addresses.local_client(env.client_addr) \
            and _leaves(recipients, bounced, agents):
        # An agent's address as sender, from a client that is not this host
        # (SASL submission, a host of mynetworks, the internet), on its way
        # out: refused. Agent mail leaves only from this host, where the
        # content filter holds and signs it; passed on from elsewhere it
        # would leave unheld and unsigned in the agent's name.
        log.info("refused: agent sender from a client that is not this host",
                 extra={"queue_id": env.queue_id})
        return Routed(refusal=outbound.FOREIGN_AGENT)
    if agents and _sent_by_held_agent(env, senders):
        # Its agent recipients get it when a person releases it: it comes
        # back through our reinjection service and is stored then.
        log.info("from an agent under review: left for the content filter",
                 extra={"queue_id": env.queue_id})
        return Routed(forged=fakes)
    if not agents:
        # Not ours: no checks, nothing stored; it passes on as it came
        # but for headers forged in our name.
        log.debug("no agent among %d recipient(s): passed on", len(recipients),
                  extra={"queue_id": env.queue_id})
        return Routed(consumed=bounced, forged=fakes)
    verdict = authenticate(cfg, env, received, msg)
    on_verdict(verdict)
    label = metrics.VERIFIED if verdict.aligned else metrics.UNVERIFIED
    delivered = headers.prepend_header(kept, AR, verdict.header)
    env = dataclasses.replace(env, sent_by=sent_by)
    # Each agent recipient's own settings, whoever sent it (another agent's
    # mail too: its outbound screening was its sender's, not the recipient's).
    screener = screening.Screener(kept, msg, verdict)
    outcomes = {a["email"]: screener.screen(a) for a in agents}
    blocked = [a for a in agents if outcomes.get(a["email"], screening.CLEAR).blocked]
    if blocked:
        with pool.connection() as conn, conn.transaction():
            for agent in blocked:
                screening.record_block(conn, agent, kept, msg, env, outcomes[agent["email"]])
        agents = [a for a in agents if a not in blocked]
        taken = bounced | {a["email"] for a in blocked}
        log.info("refused for %d agent(s) by their protection", len(blocked), extra={
            "queue_id": env.queue_id, "reason": outcomes[blocked[0]["email"]].reason})
        if not agents and all(r.lower() in taken for r in recipients) and not bounced:
            return Routed(refusal=screening.REFUSAL)
        bounced = taken
        if not agents:
            return Routed(consumed=bounced, forged=fakes)
    with metrics.timed("milter_store"):
        stored = inbox.store(pool, delivered, env, verdict, cfg.secrets.hmac_secret,
                             agents=agents, msg=msg, outcomes=outcomes)
    metrics.inbound_messages.labels(
        verdict=label,
        result=metrics.STORED if stored.message_ids else metrics.DUPLICATE).inc()
    log.info("stored for %d agent(s)", len(stored.agent_recipients), extra={
        "queue_id": env.queue_id, "message_id": ",".join(stored.message_ids),
        "spf": verdict.spf, "dkim": verdict.dkim, "dmarc": verdict.dmarc,
        "verified": verdict.aligned, "forged_removed": len(fakes)})
    return Routed(consumed=bounced | {r.lower() for r in stored.agent_recipients},
                  forged=fakes)


def _sent_by_held_agent(env: inbox.Envelope, senders: list[dict[str, Any]]) -> bool:
    """Whether an agent whose mail waits for a person sent this from this
    host (plain SMTP, sendmail), by any of its sender identities
    (``senders``: outbound.sending_agents). Such mail is held by the
    content filter after queueing; stored for agent recipients here, at
    its first pass, it would reach them before anyone approved it."""
    if env.own_path or not addresses.local_client(env.client_addr):
        return False
    if any(protection.of_agent(s).outbound_screened for s in senders):
        # Its protection may hold it: screened by the filter first.
        return True
    return outbound.decide(outbound.Candidate(
        env.mail_from, [], b"", senders=senders)) is outbound.Decision.HOLD


def _leaves(recipients: list[str], bounced: set[str], agents: list[dict[str, Any]]) -> bool:
    """Whether some recipient is no agent of ours: the message would go on
    to the content filter and out."""
    ours = bounced | {a["email"] for a in agents}
    return any(r not in ours for r in recipients)


def _consume_bounces(pool: ConnectionPool, cfg: Config, raw: bytes, recipients: list[str],
                     queue_id: str) -> set[str]:
    """Mail for our VERP return paths (bounces of our outbound mail) goes
    to core.inbound.bounces, never to anyone; the addresses it took, lowercase."""
    if not bounces.verp_recipients(recipients):
        return set()
    return {r.lower() for r in bounces.consume(pool, raw, recipients, verp.key(cfg), queue_id)}


def _consume_replies(pool: ConnectionPool, cfg: Config, raw: bytes, env: inbox.Envelope,
                     recipients: list[str]) -> set[str]:
    """Mail for the reply addresses of owner notifications goes to
    core.inbound.replyapproval (approve or reject by reply), never to anyone;
    the addresses it took, lowercase."""
    if not replyapproval.reply_recipients(recipients):
        return set()
    # Authenticated only on demand: once the address's MAC says it is
    # one we gave out, so junk to made-up addresses costs no DNS.
    return {r.lower() for r in replyapproval.consume(
        pool, cfg, raw, lambda: authenticate(cfg, env, raw, headers.parse(raw)),
        recipients, env.queue_id)}


def authenticate(cfg: Config, env: inbox.Envelope, received: bytes,
                 msg: EmailMessage) -> Verdict:
    """SPF, DKIM and DMARC of ``received`` (the bytes as they came)."""
    who = mailauth.Identity(env.client_addr, env.helo, env.mail_from,
                            headers.author_domains(msg))
    with metrics.timed("milter_auth"):
        return mailauth.authenticate(received, who, cfg.mail.authserv_id)
