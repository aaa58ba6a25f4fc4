"""WebSocket: send JSON, read the answers; str, bytes and dict/list are all accepted."""

from aikit_transports import WebSocketTransport

with WebSocketTransport("ws://127.0.0.1:8766/echo", heartbeat_interval=20.0) as ws:
    ws.send({"type": "subscribe", "channel": "prices"})  # a dict goes out as JSON text
    ws.send(b"\x00\x01")  # bytes go out as a binary frame
    events = ws.iter_events(timeout=10)
    text = next(events)
    print(text.type, text.json())
    binary = next(events)
    print(binary.type, binary.data)
