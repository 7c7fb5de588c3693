# syntax=docker/dockerfile:1.7
# changeconsole worker image.
#   docker build -t changeconsole-worker .
#   docker run --read-only --tmpfs /tmp --stop-timeout 40 \
#     -v "$PWD/config.json:/etc/changeconsole/config.json:ro" changeconsole-worker
# The root filesystem may be read-only: everything writable lives under /tmp (HOME, XDG dirs,
# the materialised config). The worker drains for up to --shutdown-timeout (25 s) after SIGTERM, so
# every orchestrator must allow a longer stop grace: docker --stop-timeout 40, ECS stopTimeout 40,
# Kubernetes terminationGracePeriodSeconds 45.

ARG PYTHON_VERSION=3.11

# ---- build: wheel and a self-contained virtualenv -----------------------------------------------------
FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/venv/bin/pip install --upgrade pip \
    && /opt/venv/bin/pip install . \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib

# ---- runtime --------------------------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim AS runtime
LABEL org.opencontainers.image.title="changeconsole-worker" \
      org.opencontainers.image.description="Headless changeconsole queue worker" \
      org.opencontainers.image.source="https://github.com/example-msp/changeconsole" \
      io.changeconsole.drain-deadline-seconds="25" \
      io.changeconsole.stop-grace-seconds="40"

RUN groupadd --system --gid 10001 changeconsole \
    && useradd --system --uid 10001 --gid changeconsole --no-create-home \
       --home-dir /tmp/home --shell /usr/sbin/nologin changeconsole \
    && mkdir -p /tmp/home /tmp/xdg \
    && chown 10001:10001 /tmp/home /tmp/xdg \
    && chmod 1777 /tmp

COPY --from=build /opt/venv /opt/venv
COPY deploy/docker/entrypoint.py /opt/changeconsole/entrypoint.py

ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp/home \
    XDG_CONFIG_HOME=/tmp/xdg/config \
    XDG_DATA_HOME=/tmp/xdg/data \
    XDG_STATE_HOME=/tmp/xdg/state \
    XDG_CACHE_HOME=/tmp/xdg/cache \
    TMPDIR=/tmp \
    CHANGECONSOLE_CONFIG=/etc/changeconsole/config.json \
    AWS_STS_REGIONAL_ENDPOINTS=regional

# /tmp is the one writable place. Declared as a volume so Docker (--read-only) and ECS (a bind-mount
# volume on /tmp, which copies the VOLUME path's content and modes from the image) both give a writable,
# sticky /tmp; Kubernetes mounts an emptyDir there.
VOLUME ["/tmp"]

USER 10001:10001
WORKDIR /tmp
EXPOSE 8080

# /healthz: loop alive and polled recently. urllib (not curl: slim images have none); any non-2xx,
# refused connection or timeout raises, so the command exits non-zero.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).close()"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "/opt/changeconsole/entrypoint.py"]
CMD ["changeconsole", "worker", "--health-port", "8080", "--shutdown-timeout", "25"]
