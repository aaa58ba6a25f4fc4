# websocket-client: callbacks get the app first;
# run_forever() blocks this thread.
import json

import websocket


def on_open(ws):
    ws.send(json.dumps({"type": "subscribe"}))


def on_message(ws, message):
    print(message)


app = websocket.WebSocketApp(
    "ws://127.0.0.1:8766/stream?count=3",
    on_open=on_open,
    on_message=on_message,
)
app.run_forever()
