"""A live feed where only recent values matter: a small drop-oldest buffer."""

import threading

from aikit_transports import BufferConfig, SSETransport

URL = "http://127.0.0.1:8765/sse?count=2000&end=204"  # the test server

buffer = BufferConfig(max_size=100, strategy="drop-oldest")
t = SSETransport(URL, buffer=buffer)
t.on("backpressure", lambda i: print("backpressure:", i.strategy.value, i.max_size))
finished = threading.Event()
t.on("done", finished.set)

t.connect()
finished.wait(30)  # nobody reads yet: the buffer keeps the newest 100 events
ids = [event.id for event in t.iter_events(timeout=10)]
print(f"read {len(ids)} events, {ids[0]} to {ids[-1]}")
print("dropped:", t.metrics.messages_dropped)
t.close()
