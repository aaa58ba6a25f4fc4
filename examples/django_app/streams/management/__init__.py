"""Management commands of the example app."""
