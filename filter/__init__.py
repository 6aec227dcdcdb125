"""`e2a serve filter`: the after-queue content filter every outbound message
passes; the one outbound gate (hold, DKIM signing, reinjection)."""
