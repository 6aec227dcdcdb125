"""The inbound milter: Postfix hands it each message at end of data."""
