"""``python manage.py consume_stream``."""
