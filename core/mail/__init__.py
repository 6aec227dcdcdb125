"""Email as bytes and headers, with no knowledge of agents or the database:
the exact rebuild of what a client sent, header reading, the text of MIME
parts, a stored message's parts (parts)."""
