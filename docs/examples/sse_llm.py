"""An LLM-style stream: POST a JSON body with a token, read deltas until [DONE]."""

import os

from aikit_transports import ReconnectPolicy, SSETransport

t = SSETransport(
    "http://127.0.0.1:8765/sse?count=3&data=json&end=sentinel",
    method="POST",
    json={"model": "small", "stream": True, "prompt": "Hi"},
    headers={"Authorization": f"Bearer {os.environ.get('API_TOKEN', 'sk-test')}"},
    idle_timeout=60.0,  # a stream silent for 60 s is stalled: drop it and reconnect
    reconnect=ReconnectPolicy(max_attempts=3),
)
with t:
    for event in t.iter_events(timeout=120):
        delta = event.json()  # ProtocolError (with a snippet) if it is not JSON
        print(delta["i"])
