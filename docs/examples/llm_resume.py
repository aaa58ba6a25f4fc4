"""A POST stream whose events carry ids is resumable: after a cut the request goes out again
with ``Last-Event-ID``, and the server continues after that id: every token once."""

from aikit_transports import SSETransport

with SSETransport(
    "https://api.example.com/v1/chat/completions", method="POST", json={"stream": True}
) as t:
    tokens = [e.json()["choices"][0]["delta"]["content"] for e in t.iter_events(timeout=60)]
print("".join(tokens), f"({t.metrics.reconnects} reconnect)")
