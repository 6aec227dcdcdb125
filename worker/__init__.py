"""`e2a serve worker`: background jobs (webhook delivery, held-message
notifications and expiry, retention), safe with several replicas."""
