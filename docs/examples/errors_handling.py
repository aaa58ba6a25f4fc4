"""What to do about each error: some need a fix, some a retry later, some nothing."""

from aikit_transports import (
    ConnectError,
    HTTPStatusError,
    ProtocolError,
    ReconnectFailed,
    ReconnectPolicy,
    SSETransport,
    TransportError,
)

POLICY = ReconnectPolicy(max_attempts=1, initial_delay=0.1)


def read(url: str) -> None:
    try:
        with SSETransport(url, reconnect=POLICY) as t:
            for event in t.iter_events(timeout=10):
                print("event", event.data)
    except HTTPStatusError as exc:  # 4xx: fails at once, never retried
        if exc.status_code in (401, 403):
            print("check the credentials:", exc.message)
        else:
            print("the server refused:", exc.message)
    except ProtocolError as exc:  # not an event stream: wrong URL, or a proxy's page
        print("not a stream:", exc.message)
    except ReconnectFailed as exc:  # retryable failures outlasted the policy
        print("gave up:", type(exc.__cause__).__name__)
    except ConnectError as exc:  # a TLS failure (never retried), a bad URL
        print("cannot connect:", exc.message)
    except TransportError as exc:  # anything else of ours
        print("failed:", exc)


read("http://127.0.0.1:8765/sse?status=401")  # answers 401
read("http://127.0.0.1:8765/sse?content_type=text/html")  # answers text/html
read("http://127.0.0.1:8765/sse?status=503")  # answers 503
