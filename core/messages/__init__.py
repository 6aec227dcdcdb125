"""Stored messages as the API shows them beyond their rows: labels,
conversations, and the mailbox changes both API generations make (mailbox)."""
