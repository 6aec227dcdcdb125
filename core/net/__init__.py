"""Network plumbing shared by the services: the socket addresses of the
configuration, the listening sockets Postfix connects to, the one DNS resolver."""
