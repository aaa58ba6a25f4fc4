"""Resume across restarts: keep the id of the last event handled, start from it."""

from pathlib import Path

from aikit_transports import SSETransport

checkpoint = Path("last-event-id.txt")
last_id = checkpoint.read_text() if checkpoint.exists() else None

URL = "http://127.0.0.1:8765/sse?count=5&end=sentinel"  # the test server
with SSETransport(URL, last_event_id=last_id) as t:
    for event in t.iter_events(timeout=30):
        print("handling", event.id)
        checkpoint.write_text(event.id or "")  # after the work is done, not before
        if event.id == "3":
            break  # a restart now resumes after event 3
