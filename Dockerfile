# Archon Bot: one image for both Procfile processes (docs/operations.md).
#   docker build -t archon-bot .
#   web (the default command):  docker run --env-file .env -p 3000:3000 archon-bot
#   worker:                     docker compose up (docker-compose.yml gives it what bubblewrap needs)
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ARCHON_DATA_DIR=/data

# bubblewrap sandboxes every command run for a model or a repository; git clones, commits and pushes.
# Versions come from the Debian release the base image pins, so security updates still apply.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap git ca-certificates \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY bot ./bot
RUN pip install --no-cache-dir . && rm -rf /app/build

# Not root: RLIMIT_NPROC (the process cap when no pids cgroup can be made) does not bind root, and a
# compromised command should not own the container either.
RUN useradd --create-home --uid 10001 --user-group archon \
    && mkdir -p /data \
    && chown archon:archon /data
# Numeric, so orchestrators (Kubernetes' runAsNonRoot) can see it is not root: 10001 is `archon`.
USER 10001:10001
WORKDIR /home/archon
VOLUME ["/data"]

EXPOSE 3000
# The web process answers /healthz (503 when Redis is unreachable); the worker service disables this.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '3000') + '/healthz', timeout=5)"]

# The Procfile's `web:` command; the worker service runs the Procfile's `worker:` command instead.
CMD ["gunicorn", "-c", "python:bot.gunicorn_conf", "bot.web:create_app()"]
