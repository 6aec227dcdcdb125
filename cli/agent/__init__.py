"""The agent builder's commands (login, agents, listen, inbox, read, reply,
send, ...): clients of the /v1 API like any other, over HTTP only, so they
work from any machine that reaches the API and show how /v1 is spoken."""
