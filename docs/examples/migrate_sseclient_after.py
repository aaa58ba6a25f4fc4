# aikit-transports: reconnects, resumes, detects stalls.
from aikit_transports import SSETransport

url = "https://stream.example.com/events"
with SSETransport(url) as t:
    for event in t.iter_events():
        print(event.id, event.data)
