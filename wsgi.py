"""WSGI entry point: `gunicorn wsgi:app`."""
from gemini_backend import create_app

app = create_app()
