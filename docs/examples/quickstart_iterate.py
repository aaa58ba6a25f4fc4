"""Quick start: read a stream from the test server, through drops, to its end."""

from aikit_transports import SSETransport

# The test server (python -m aikit_transports.testing) drops this stream every 4 events,
# asks clients to reconnect after 200 ms (an SSE "retry:" field) and ends with [DONE].
URL = "http://127.0.0.1:8765/sse?count=10&drop_every=4&retry=200&end=sentinel"

with SSETransport(URL) as t:  # connects here; closes (and joins its thread) on exit
    for event in t.iter_events(timeout=30):
        print(event.id, event.data)
    print("reconnects:", t.metrics.reconnects)
