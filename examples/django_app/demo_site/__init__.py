"""An example Django project that relays streams to browsers with aikit-transports."""
