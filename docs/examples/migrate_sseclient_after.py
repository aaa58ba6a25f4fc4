# aikit-transports: reconnects, resumes, detects stalls.
from aikit_transports import SSETransport

url = "http://127.0.0.1:8765/sse?count=3&end=204"
with SSETransport(url) as t:
    for event in t.iter_events():
        print(event.id, event.data)
