"""connect(): the first wire that connects wins (a proxy that blocks WebSocket, for one)."""

from aikit_transports import connect

t = connect("https://api.example.com/live", transports=("websocket", "sse"))
print("connected with", t.type.value)
with t:
    print(next(iter(t.iter_events(timeout=10))).data)
