"""Quick start: the same stream with callbacks, run on the transport's reader thread."""

import threading

from aikit_transports import SSETransport

URL = "http://127.0.0.1:8765/sse?count=5&drop_every=3&retry=200&end=sentinel"

finished = threading.Event()
t = SSETransport(URL)
t.on("event", lambda event: print("event", event.id, event.data))
t.on("reconnecting", lambda attempt, delay, error: print("lost:", error.message))
t.on("connected", lambda: print("connected, resuming after", t.last_event_id))
t.on("closed", lambda reason: finished.set())
t.connect()  # returns once connected; events go to the callbacks from now on
finished.wait(30)  # the main thread is free meanwhile
t.close()
