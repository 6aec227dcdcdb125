"""Numbered, idempotent schema migrations (plain SQL), applied by core.db.migrate."""
