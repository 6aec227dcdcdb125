"""Runs the published e2a SDK's ``AsyncE2AClient.listen()`` for
test_sdk_listen.py, in an interpreter of its own (sdk_driver.py says why).

Usage: ``sdk_listener.py BASE_URL API_KEY AGENT_EMAIL COUNT``. Prints each
WSNotification the SDK yields as one JSON line on stdout, and exits 0 after
COUNT of them. The SDK's own defaults otherwise (reconnect on, its
websockets client's pings).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys

from e2a.v1 import AsyncE2AClient


async def listen(base_url: str, api_key: str, agent_email: str, count: int) -> None:
    seen = 0
    async with AsyncE2AClient(api_key=api_key, agent_email=agent_email,
                              base_url=base_url) as client:
        async for notification in client.listen():
            print(json.dumps(dataclasses.asdict(notification)), flush=True)
            seen += 1
            if seen == count:
                return


if __name__ == "__main__":
    asyncio.run(listen(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
