"""connect(): the first wire that connects wins (a proxy may block WebSocket)."""

from aikit_transports import connect

# The test server's HTTP port speaks SSE but not WebSocket, like a proxy that blocks it.
URL = "http://127.0.0.1:8765/sse?count=3&end=sentinel"

t = connect(URL, transports=("websocket", "sse"))
print("connected with", t.type.value)
with t:
    print(next(iter(t.iter_events(timeout=10))).data)
