"""Webhooks and the event log they carry: subscriptions, event types (and
/v1's words for them: v1events), fan-out (dispatch), delivery with retries,
payloads, signatures and the URL/SSRF guards."""
