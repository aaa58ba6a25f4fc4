# aikit-transports: the same request; events as they
# arrive; [DONE] ends the stream.
from aikit_transports import SSETransport

with SSETransport(
    "http://127.0.0.1:8765/sse?count=3&data=json&end=sentinel",
    method="POST",
    json={"prompt": "Hi", "stream": True},
    headers={"Authorization": "Bearer sk-test"},
    idle_timeout=60.0,
) as t:
    for event in t.iter_events():
        print(event.json()["i"])
