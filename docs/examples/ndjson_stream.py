"""NDJSON over HTTP: one JSON value per line; a bad line is reported, and skipped."""

from aikit_transports import HTTPStreamTransport

# The test server (python -m aikit_transports.testing) garbles every second line.
URL = "http://127.0.0.1:8765/ndjson?count=5&malformed_every=2&end=204"

skipped = []
t = HTTPStreamTransport(URL)
t.on("error", lambda error: skipped.append(error.message))  # on the reader thread
with t:
    for event in t.iter_events(timeout=30):
        print(event.id, event.data["data"])  # data: the parsed JSON value; id: its "id"
print("skipped:", *skipped, sep="\n  ")
