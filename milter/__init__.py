"""`e2a serve milter`: Postfix hands it each message at end of data. It only
translates libmilter's calls: what happens to a message is core.inbound's."""
