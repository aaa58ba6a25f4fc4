"""Long-poll: repeated requests carrying Last-Event-ID; 204 means "nothing new yet"."""

from aikit_transports import HTTPStreamTransport

# The test server (python -m aikit_transports.testing) answers the first poll with 204,
# then two events per poll.
URL = "http://127.0.0.1:8765/poll?count=6&per_poll=2&empty_polls=1"

t = HTTPStreamTransport(URL, mode="long-poll", poll_interval=0.1)
with t:
    received = []
    for event in t.iter_events(timeout=30):
        received.append(event.id)
        if len(received) == 6:
            break  # a long poll never ends by itself
print(received)
print("last id:", t.last_event_id)
