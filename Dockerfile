# gemini-backend: one image for the web (gunicorn) and the worker (Huey consumer).
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FLASK_APP=wsgi \
    APP_ENV=production \
    PORT=8000

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY gemini_backend ./gemini_backend
COPY migrations ./migrations
COPY wsgi.py gunicorn.conf.py ./

# Never run as root.
RUN useradd --create-home --uid 10001 app && mkdir -p /app/instance && chown app:app /app/instance
USER app

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
    CMD python -c "import urllib.request,os; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\",\"8000\")}/healthz', timeout=4)"

# Web by default; the worker runs the same image with `flask worker --graceful-signal TERM`.
CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
