# Exact versions (not digests: pin a digest with `docker pull` + `docker inspect`
# where the registry is reachable, and bump both together).
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
# The code belongs to root and is read-only to the process; it runs as a user
# of its own and writes only the collected static files.
RUN useradd --system --uid 10001 --create-home --shell /usr/sbin/nologin app \
    && mkdir /app/staticfiles && chown app:app /app/staticfiles
COPY . .
USER app
