"""The example app: two streaming views and a command that consumes a stream."""
