"""Protection: the scanning engine behind an agent's protection settings.

Pure functions, no I/O: the milter (inbound screening), the content filter
(outbound data-loss guard) and the API call them with a parsed message, the
agent's settings and what the mail-auth checks verified; they return findings
and decisions, and the caller stores, holds or labels.

- ``findings``: ``Finding``, the sensitivities, ``verdict`` (findings +
  sensitivity -> none|flag|review|block) and the API shapes built from them.
- ``parts``: the text a scanner reads from a message, bounded.
- ``inbound``: prompt injection, jailbreak, hidden text, phishing and
  exfiltration requests, obfuscation.
- ``outbound``: secrets, personal data with checksums, risky attachments.
- ``gates``: sender (inbound) and recipient (outbound) gates.
- ``autoreply``: auto-generated mail (loops, vacation replies, lists).
"""
