"""Mail received for our addresses: from the rebuilt bytes to its consumers
(agents' inboxes, bounces of our own mail, reply approvals), and the
X-E2A-Auth-* attestation and forged-header rules that come with it."""
