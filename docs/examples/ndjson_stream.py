"""NDJSON over HTTP: one JSON value per line; a bad line is reported and the stream goes on."""

from aikit_transports import HTTPStreamTransport

skipped = []
t = HTTPStreamTransport("https://api.example.com/feed.ndjson")
t.on("error", lambda error: skipped.append(error.message))  # on the reader thread
with t:
    for event in t.iter_events(timeout=30):
        print(event.id, event.data["data"])  # data is the parsed JSON value; id its "id"
print("skipped:", *skipped, sep="\n  ")
