"""The REST and WebSocket API (Falcon under gunicorn with gevent).

Imports nothing at package level: ``python -m e2a.api`` must start without
psycopg loaded (see e2a.api.server).
"""
