# sseclient-py: parses one response; no reconnect, no resume.
import requests
import sseclient

response = requests.get(
    "http://127.0.0.1:8765/sse?count=3&end=204",
    stream=True,
    headers={"Accept": "text/event-stream"},
)
client = sseclient.SSEClient(response)
for event in client.events():
    print(event.id, event.data)
client.close()
