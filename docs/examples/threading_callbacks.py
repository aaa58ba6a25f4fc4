"""Callbacks run on the library's threads, one at a time; close() anywhere."""

import threading

from aikit_transports import SSETransport

t = SSETransport("http://127.0.0.1:8765/sse?count=10&delay=0.05&end=sentinel")
seen = []


def on_event(event):
    seen.append(threading.current_thread().name.startswith("aikit-"))
    if event.id == "3":
        t.close()  # allowed in a callback: the close completes as it unwinds


closed = threading.Event()
t.on("event", on_event)
t.on("closed", lambda reason: (print("closed:", reason), closed.set()))
t.connect()
closed.wait(30)
t.close()  # idempotent
print("events:", len(seen), "all on the library's threads:", all(seen))
