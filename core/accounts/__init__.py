"""Users and what they own: registration of users, keys and agents, API keys,
signing secrets, mail domains (names, DNS records, DKIM keys), an account's
limits and erasure (data)."""
