"""X-E2A-Signature: docs/contract.md's vector, dual signing during a rotation,
and what a receiver accepts."""

from __future__ import annotations

from datetime import UTC, datetime

from e2a.core.webhooks import payload as webhookpayload
from e2a.core.webhooks import signature as webhooksig

VECTOR_BODY = (b'{"type":"email.sent","id":"evt_vector","schema_version":"1",'
               b'"created_at":"2023-11-14T22:13:20Z","data":{"message_id":"msg_vector"}}')
VECTOR_T = 1700000000
CURRENT = "1de00bc31e17fd3bec71b082a780ff6b2cbdf75a33dff23bf5fd17011ad480b4"
PREVIOUS = "5e52f2321124cafff81c81397278a776dd24a4087ae6aed8fcc8b9c183593872"


def test_contract_vector():
    assert webhooksig.v1("whsec_current_vector", VECTOR_T, VECTOR_BODY) == CURRENT
    assert webhooksig.v1("whsec_previous_vector", VECTOR_T, VECTOR_BODY) == PREVIOUS


def test_our_envelope_is_the_vector_byte_for_byte():
    body = webhookpayload.event_envelope(
        "evt_vector", "email.sent", 1, datetime.fromtimestamp(VECTOR_T, UTC),
        {"message_id": "msg_vector"})
    assert body == VECTOR_BODY


def test_single_and_dual_signing_headers():
    assert webhooksig.header(["whsec_current_vector"], VECTOR_T, VECTOR_BODY) == \
        f"t={VECTOR_T},v1={CURRENT}"
    assert webhooksig.header(["whsec_current_vector", "whsec_previous_vector"], VECTOR_T,
                             VECTOR_BODY) == f"t={VECTOR_T},v1={CURRENT},v1={PREVIOUS}"


def test_a_receiver_holding_either_secret_accepts_a_dual_signed_delivery():
    value = webhooksig.header(["whsec_new", "whsec_old"], VECTOR_T, VECTOR_BODY)
    for secret in ("whsec_new", "whsec_old"):
        assert webhooksig.verify(value, secret, VECTOR_BODY, now=VECTOR_T + 10)
    assert not webhooksig.verify(value, "whsec_other", VECTOR_BODY, now=VECTOR_T)


def test_receivers_refuse_a_stale_timestamp_or_another_body():
    value = webhooksig.header(["whsec_new"], VECTOR_T, VECTOR_BODY)
    assert webhooksig.verify(value, "whsec_new", VECTOR_BODY, now=VECTOR_T - 300)
    assert not webhooksig.verify(value, "whsec_new", VECTOR_BODY, now=VECTOR_T + 301)
    assert not webhooksig.verify(value, "whsec_new", VECTOR_BODY + b" ", now=VECTOR_T)
