"""When attempts run out: ReconnectFailed, whose __cause__ is the last error."""

from aikit_transports import ReconnectFailed, ReconnectPolicy, SSETransport

policy = ReconnectPolicy(max_attempts=2, initial_delay=0.1, max_delay=1.0)
t = SSETransport("http://127.0.0.1:8765/sse?status=503", reconnect=policy)
t.on(
    "reconnecting",
    lambda attempt, delay, error: print(f"attempt {attempt} after: {error.message}"),
)
try:
    t.connect()
except ReconnectFailed as exc:
    print("gave up:", exc.message)
    print("last error:", type(exc.__cause__).__name__, exc.__cause__.status_code)
print("state:", t.state)
t.close()
print("state:", t.state)
