"""An Anthropic-style stream: it says ``event: message_stop`` and then closes; ``done_when``
ends it there, whatever the server does with the connection afterwards."""

from aikit_transports import SSETransport

with SSETransport(
    "https://api.example.com/v1/messages",
    method="POST",
    json={"model": "small", "stream": True, "messages": [{"role": "user", "content": "Hi"}]},
    done_when=lambda event: event.type == "message_stop",  # delivered, then done
) as t:
    for event in t.iter_events(timeout=60):
        if event.type == "content_block_delta":
            print(event.json()["delta"]["text"], end="", flush=True)
print()
