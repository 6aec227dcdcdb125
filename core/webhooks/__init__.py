"""Webhooks and the event log they carry: subscriptions, event types, fan-out
(dispatch), delivery with retries, payloads, signatures and the URL/SSRF guards."""
