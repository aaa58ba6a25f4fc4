"""An Anthropic-style stream says ``event: message_stop``, then closes:
``done_when`` ends it there, whatever the server does with the connection."""

from aikit_transports import SSETransport

prompt = {"role": "user", "content": "Hi"}
with SSETransport(
    "http://127.0.0.1:8765/llm?style=anthropic",
    method="POST",
    json={"model": "small", "stream": True, "messages": [prompt]},
    done_when=lambda event: event.type == "message_stop",  # delivered, then done
) as t:
    for event in t.iter_events(timeout=60):
        if event.type == "content_block_delta":
            print(event.json()["delta"]["text"], end="", flush=True)
print()
