"""``python manage.py consume_stream``: read a stream in a long-running worker."""

from __future__ import annotations

from typing import Any, Optional

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from aikit_transports import ReconnectPolicy, SSETransport, TransportError


class Command(BaseCommand):
    help = "Consume an SSE stream, resuming after drops; Ctrl-C stops it cleanly."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", help="stream URL (default: AIKIT_FEED_URL)")
        parser.add_argument("--count", type=int, help="stop after this many events")
        parser.add_argument("--last-event-id", help="resume after this event id")

    def handle(self, *args: Any, **options: Any) -> None:
        transport = SSETransport(
            options["url"] or settings.AIKIT_FEED_URL,
            headers={"Authorization": f"Bearer {settings.AIKIT_UPSTREAM_TOKEN}"},
            last_event_id=options["last_event_id"],
            # a worker never gives up
            reconnect=ReconnectPolicy(max_attempts=None, max_delay=60.0),
        )
        transport.on(
            "reconnecting",
            lambda attempt, delay, error: self.stderr.write(
                f"reconnecting (attempt {attempt}) in {delay:.1f} s: {error.message}"
            ),
        )
        received = 0
        # the id of the last event handled: where a restart resumes
        last_id = options["last_event_id"]
        try:
            with transport:
                for event in transport.iter_events():
                    self.handle_event(event.id, event.data)
                    received += 1
                    last_id = event.id
                    if received == options["count"]:
                        break
        except KeyboardInterrupt:
            self.stderr.write("interrupted")
        except TransportError as exc:
            self.stderr.write(f"stream failed: {exc.message}")
        hint = f"; resume with --last-event-id {last_id}" if last_id else ""
        self.stdout.write(f"{received} events{hint}")

    def handle_event(self, event_id: Optional[str], data: str) -> None:
        """Do the work for one event (store it, forward it, ...); here: print it."""
        self.stdout.write(f"{event_id} {data}")
