# aikit-transports: an iterator (or callbacks);
# sends wait in a queue until connected.
from aikit_transports import WebSocketTransport

ws = WebSocketTransport("ws://127.0.0.1:8766/stream?count=3")
ws.send({"type": "subscribe"})  # sent first on connect
with ws:
    for event in ws.iter_events():
        print(event.data)
