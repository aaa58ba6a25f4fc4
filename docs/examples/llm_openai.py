"""An OpenAI-style stream: POST the prompt, print each delta until [DONE]."""

from aikit_transports import SSETransport

prompt = {"role": "user", "content": "Hi"}
with SSETransport(
    "http://127.0.0.1:8765/llm",
    method="POST",
    json={"model": "small", "stream": True, "messages": [prompt]},
    headers={"Authorization": "Bearer sk-..."},
) as t:
    for event in t.iter_events(timeout=60):  # ends at [DONE], not delivered
        print(event.json()["choices"][0]["delta"]["content"], end="", flush=True)
print()
