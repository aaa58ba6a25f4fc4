"""Quick start: the same stream with callbacks, run on the transport's reader thread."""

from aikit_transports import Event, SSETransport

URL = "http://127.0.0.1:8765/sse?count=5&drop_every=3&retry=200&end=sentinel"

t = SSETransport(URL)
t.on("reconnecting", lambda attempt, delay, error: print("lost:", error.message))
t.on("connected", lambda: print("connected, resuming after", t.last_event_id))


@t.on("event")  # the decorator form of t.on("event", show)
def show(event: Event) -> None:
    print("event", event.id, event.data)


t.connect()  # returns once connected; events go to the callbacks from now on
print("closed:", t.wait(30))  # like run_forever(): blocks until closed
t.close()
