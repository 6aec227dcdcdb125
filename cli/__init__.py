"""The `e2a` command: services, database, accounts and the developer sandbox."""
