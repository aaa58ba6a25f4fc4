# sseclient-py: parses one response; no reconnect, no resume.
import requests
import sseclient

response = requests.get(
    "https://stream.example.com/events",
    stream=True,
    headers={"Accept": "text/event-stream"},
)
client = sseclient.SSEClient(response)
for event in client.events():
    print(event.id, event.data)
client.close()
