"""Mail authentication: one module per check (spf, dkim, dmarc), combined by
``authenticate`` into the verdict the milter attests to."""

from e2a.core.mailauth.verdict import Identity, Verdict, authenticate

__all__ = ["Identity", "Verdict", "authenticate"]
