"""Many streams in one process: a manager shares timers, pools, events and metrics."""

import threading
from collections import Counter

from aikit_transports import TransportManager

counts: Counter[str] = Counter()
lock = threading.Lock()


def on_event(transport, event):  # runs on that transport's reader thread
    with lock:
        counts[transport.type.value] += 1


with TransportManager(max_transports=10, idle_timeout=300.0) as mgr:
    mgr.on("event", on_event)
    feeds = [
        mgr.create("sse", "http://127.0.0.1:8765/sse?count=5&end=sentinel&feed=a"),
        mgr.create("sse", "http://127.0.0.1:8765/sse?count=5&end=sentinel&feed=b"),
        mgr.create("websocket", "ws://127.0.0.1:8766/stream?count=5"),
    ]
    print(mgr.summary())
    for t in feeds:
        t.connect()
    for t in feeds:
        t.wait(30)  # until it is closed (here: the stream finished)
    print(dict(counts))
    print("messages:", mgr.metrics().messages_received)
    print(mgr.summary())  # closed transports left the manager
