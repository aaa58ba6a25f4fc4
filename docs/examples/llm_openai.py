"""An OpenAI-style stream: POST the prompt, print each delta until ``data: [DONE]``."""

from aikit_transports import SSETransport

with SSETransport(
    "https://api.example.com/v1/chat/completions",
    method="POST",
    json={"model": "small", "stream": True, "messages": [{"role": "user", "content": "Hi"}]},
    headers={"Authorization": "Bearer sk-..."},
) as t:
    for event in t.iter_events(timeout=60):  # ends at [DONE], which is not delivered
        print(event.json()["choices"][0]["delta"]["content"], end="", flush=True)
print()
