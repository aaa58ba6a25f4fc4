"""TLS with a private CA: verify against its bundle; never a fallback to plain text."""

from aikit_transports import ConnectError, WebSocketTransport

URL = "wss://internal.example.com/ws"
CA_BUNDLE = "/etc/ssl/internal-ca.pem"

t = WebSocketTransport(URL)  # verified against the system's CAs, which lack this one
try:
    t.connect()
except ConnectError as exc:  # not retried: retrying cannot fix a certificate
    print("refused:", exc.message.split(":")[0])
finally:
    t.close()

with WebSocketTransport(URL, verify=CA_BUNDLE) as ws:  # True, False or a CA path
    ws.send("hello")
    print(next(iter(ws.iter_events(timeout=10))).data)
