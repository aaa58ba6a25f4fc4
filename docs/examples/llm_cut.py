"""A POST answer cut in the middle is never sent again (that would start, and
bill, a second answer glued to the first): the partial answer, then
``StreamInterrupted``."""

from aikit_transports import SSETransport, StreamInterrupted

answer = []
url = "http://127.0.0.1:8765/llm?cut_after=3"
t = SSETransport(url, method="POST", json={"stream": True})
try:
    for event in t.iter_events(timeout=60):
        answer.append(event.json()["choices"][0]["delta"]["content"])
except StreamInterrupted as exc:
    print(f"partial answer: {''.join(answer)!r}")
    print(f"events delivered: {exc.events_delivered}, last id: {exc.last_event_id}")
    print(f"what happened: {exc.__cause__.message}")
finally:
    t.close()
