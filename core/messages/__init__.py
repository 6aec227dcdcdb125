"""Stored messages as the API shows them beyond their rows: labels and
conversations."""
