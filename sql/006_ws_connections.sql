-- WebSocket ownership (issue 5). Idempotent.

-- The one live WebSocket connection of each local-mode agent, whichever API
-- process holds it. A new connection takes the row over (and says so on the
-- e2a_ws_control channel); the process holding the old one sees it is no
-- longer the owner and closes it with 4000. The row, not the order in which
-- processes hear the notifications, decides: every process agrees.
CREATE TABLE IF NOT EXISTS ws_connections (
    agent_id       text PRIMARY KEY REFERENCES agents (id) ON DELETE CASCADE,
    connection_id  text NOT NULL,
    connected_at   timestamptz NOT NULL DEFAULT now()
);
