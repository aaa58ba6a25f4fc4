# aikit-transports: an iterator (or callbacks);
# sends wait in a queue until connected.
from aikit_transports import WebSocketTransport

ws = WebSocketTransport("wss://api.example.com/ws")
ws.send({"type": "subscribe"})  # sent first on connect
with ws:
    for event in ws.iter_events():
        print(event.data)
