"""Talking to Postfix as an SMTP client and what outbound mail carries for
it: submission, reinjection (with XFORWARD), the connections kept between
messages (smtppool), VERP return paths, DKIM signing."""
