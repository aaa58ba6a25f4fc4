# requests: "data:" lines parsed by hand; a drop
# ends the loop, a stall hangs it.
import json

import requests

with requests.post(
    "http://127.0.0.1:8765/sse?count=3&data=json&end=sentinel",
    json={"prompt": "Hi", "stream": True},
    headers={"Authorization": "Bearer sk-test"},
    stream=True,
    timeout=60,
) as resp:
    resp.raise_for_status()
    for line in resp.iter_lines():
        if not line.startswith(b"data: "):
            continue
        data = line[len(b"data: ") :].decode()
        if data == "[DONE]":
            break
        print(json.loads(data)["i"])
