"""Long-poll: repeated requests carrying Last-Event-ID; 204 means "nothing new yet"."""

from aikit_transports import HTTPStreamTransport

t = HTTPStreamTransport("https://api.example.com/updates", mode="long-poll", poll_interval=0.1)
with t:
    received = []
    for event in t.iter_events(timeout=30):
        received.append(event.id)
        if len(received) == 6:
            break  # a long poll never ends by itself
print(received)
print("last id:", t.last_event_id)
