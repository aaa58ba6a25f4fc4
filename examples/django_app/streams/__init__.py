"""The example app: two streaming views and a management command that consumes a stream."""
