"""``python manage.py relay_feed NAME``: relay one upstream stream into Redis.

Run it on several hosts (a systemd unit, a Kubernetes Deployment with 2 replicas, ...): one
relays, the others stand by and take over within ``lease_ttl`` seconds when it dies, resuming
the upstream where it stopped. SIGTERM and Ctrl-C stop it cleanly and hand the lease over at once.
"""

from __future__ import annotations

import signal
import threading
from typing import Any, Dict, Optional

from django.core.management.base import BaseCommand, CommandError, CommandParser

from aikit_transports import ReconnectPolicy, TransportError
from aikit_transports.contrib.redis import RedisRelay
from aikit_transports.transports import BaseTransport, resolve_transport

from ... import conf


class Command(BaseCommand):
    help = "Relay one configured upstream stream (AIKIT_REDIS_FEEDS) into a Redis Stream."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="a feed of settings.AIKIT_REDIS_FEEDS")

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["name"]
        try:
            feed = conf.feed(name)
        except KeyError:
            raise CommandError(f"no feed {name!r} in settings.AIKIT_REDIS_FEEDS") from None
        wire = resolve_transport(feed.get("wire", "sse"))

        def upstream(last_id: Optional[str]) -> BaseTransport:
            # Called each time this process takes the lease, with the last upstream id that
            # is in Redis: the new connection resumes right after it.
            return wire(
                feed["url"],
                headers=feed.get("headers"),
                last_event_id=last_id,
                reconnect=ReconnectPolicy(max_attempts=None, max_delay=60.0),
            )

        relay = RedisRelay(
            upstream,
            conf.redis_url(),
            name,
            maxlen=feed.get("maxlen", 100_000),
            lease_ttl=feed.get("lease_ttl", 10.0),
        )
        relay.on(
            "lease",
            lambda held: self.stdout.write(
                f"{name}: {'relaying' if held else 'standing by'} ({relay.token})"
            ),
        )
        relay.on("error", lambda error: self.stderr.write(f"{name}: {error.message}"))
        previous = self.install_signal_handlers(relay)
        self.stdout.write(f"{name}: waiting for the lease (another relay may hold it)")
        try:
            relay.run()
        except KeyboardInterrupt:
            relay.close()
        except TransportError as exc:
            raise CommandError(f"{name}: relay failed: {exc.message}") from exc
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        m = relay.metrics
        self.stdout.write(f"{name}: {relay.state}; {m.events_out} events appended")

    def install_signal_handlers(self, relay: RedisRelay) -> Dict[int, Any]:
        """SIGTERM (and SIGINT) close the relay: it releases the lease for a standby to take.
        Returns the handlers they replace."""
        previous: Dict[int, Any] = {}
        if threading.current_thread() is not threading.main_thread():
            return previous  # signals are only delivered to the main thread
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, lambda signum, frame: relay.close())
        return previous
