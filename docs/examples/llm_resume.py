"""A POST stream whose events carry ids is resumable: after a cut the request
goes out again with ``Last-Event-ID``, and the server continues after that id."""

from aikit_transports import SSETransport

url = "http://127.0.0.1:8765/llm?ids=1&cut_after=3"
with SSETransport(url, method="POST", json={"stream": True}) as t:
    events = t.iter_events(timeout=60)
    tokens = [e.json()["choices"][0]["delta"]["content"] for e in events]
print("".join(tokens), f"({t.metrics.reconnects} reconnect)")
