"""Talking to Postfix as an SMTP client and what outbound mail carries for
it: submission, reinjection (with XFORWARD), VERP return paths, DKIM signing."""
