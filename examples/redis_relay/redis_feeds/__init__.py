"""A Django app that fans one upstream stream out to every worker through Redis Streams."""
