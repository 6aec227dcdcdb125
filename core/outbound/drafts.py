"""The drafts of replies and forwards: who a reply goes to, its subject and
threading, a forward's quoted original. Both API generations build their
drafts here, each from its own request shape."""

from __future__ import annotations

from typing import Any

from e2a.core.ids import new_id
from e2a.core.mail import parts as mailparts
from e2a.core.outbound import replies
from e2a.core.outbound.compose import Attachment, Draft, Mailbox


class Minted(str):
    """A conversation id made here for a new message: no account has used
    it yet, so whose it is needs no look-up (api/resources/send.Outbox)."""

    __slots__ = ()


def conversation(given: str, inherited: str | None = None) -> str:
    """The caller's id, else the thread's, else a new one."""
    return given or inherited or Minted(new_id("conv"))


def minted(conversation_id: str) -> bool:
    """Made by ``conversation`` (or ``test_mail``) for this message, not named by anyone."""
    return isinstance(conversation_id, Minted)


def _without(boxes: tuple[Mailbox, ...], taken: set[str]) -> tuple[Mailbox, ...]:
    """``boxes`` minus the addresses in ``taken`` (lowercase), each once."""
    kept = []
    for box in boxes:
        if box.address.lower() not in taken:
            taken.add(box.address.lower())
            kept.append(box)
    return tuple(kept)


def reply(sender: Mailbox, agent: dict[str, Any], inbound: dict[str, Any], *, text: str,
          html: str, conversation_id: str, reply_all: bool, cc: tuple[Mailbox, ...] = (),
          bcc: tuple[Mailbox, ...] = (), attachments: tuple[Attachment, ...] = (),
          quote_history: bool = False) -> Draft:
    """To the message's Reply-To (else From); with ``reply_all`` also to its
    other To and Cc addresses, never the agent itself; threaded under it.
    ``quote_history``: the original quoted below the reply (its HTML too
    when the reply has HTML)."""
    if quote_history:
        quoted_text, quoted_html = replies.quoted_history(inbound)
        text = f"{text.rstrip()}\n\n{quoted_text}"
        html = f"{html}\n<br>\n{quoted_html}" if html else ""
    to, auto_cc = replies.reply_recipients(inbound, agent["email"], reply_all)
    to_boxes = tuple(Mailbox(address) for address in to)
    taken = {box.address.lower() for box in to_boxes}
    in_reply_to, references = replies.threading(inbound)
    return Draft(sender=sender, to=to_boxes,
                 cc=_without((*(Mailbox(a) for a in auto_cc), *cc), taken), bcc=bcc,
                 subject=replies.reply_subject(inbound["subject"]), text=text, html=html,
                 conversation_id=conversation(conversation_id, inbound["conversation_id"]),
                 in_reply_to=in_reply_to, references=references, attachments=attachments)


def forward(sender: Mailbox, inbound: dict[str, Any], *, to: tuple[Mailbox, ...], text: str,
            html: str, conversation_id: str, cc: tuple[Mailbox, ...] = (),
            bcc: tuple[Mailbox, ...] = (),
            attachments: tuple[Attachment, ...] = (), with_originals: bool = False) -> Draft:
    """The comment, then the original quoted; a new thread unless a
    conversation is named. ``with_originals``: the original's attachments
    go along, before the caller's (the draft's limits hold for all)."""
    if with_originals:
        attachments = (*original_attachments(inbound), *attachments)
    return Draft(sender=sender, to=to, cc=cc, bcc=bcc,
                 subject=replies.forward_subject(inbound["subject"]),
                 text=replies.forward_text(text, inbound),
                 html=replies.forward_html(html, inbound) if html else "",
                 conversation_id=conversation(conversation_id), attachments=attachments)


def original_attachments(inbound: dict[str, Any]) -> tuple[Attachment, ...]:
    raw = bytes(inbound["raw_message"]) if inbound["raw_message"] is not None else None
    return tuple(Attachment(meta.get("filename") or f"attachment-{meta['index']}",
                            meta["content_type"], data)
                 for meta, data in mailparts.attachments(raw))


TEST_SUBJECT = "Test email from e2a"


def test_mail(sender: Mailbox, agent: dict[str, Any]) -> Draft:
    """The agent's test mail: to itself, out through the mail server and
    back in, so it shows in its own inbox."""
    return Draft(sender=sender, to=(Mailbox(agent["email"]),), subject=TEST_SUBJECT,
                 text=f"This is a test email from e2a. {agent['email']} sent it to itself to "
                      "show that its mail goes out and comes back in.\n",
                 conversation_id=Minted(new_id("conv")))
