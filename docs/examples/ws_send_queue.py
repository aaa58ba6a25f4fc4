"""Sends made while not connected wait in a bounded queue, then go out in order."""

from aikit_transports import WebSocketTransport

ws = WebSocketTransport("ws://127.0.0.1:8766/echo", send_queue_size=100)
for n in range(3):
    ws.send(f"queued {n}")  # not connected yet: queued (BufferFullError when full)
ws.connect()  # flushed first, before any newer send
ws.send("after connect")
events = ws.iter_events(timeout=10)
for _ in range(4):
    print(next(events).data)
ws.close()  # waits (up to its timeout) for the queue to drain, then sends close 1000
