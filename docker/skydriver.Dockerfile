# syntax=docker/dockerfile:1
# SkyDriver's REST server (`skydriver-server`). Build from the repository root:
#   docker build -f docker/skydriver.Dockerfile --build-arg VERSION=0.1.0 -t ghcr.io/skydriver-ewms/skydriver:0.1.0 .

# -- build: the project's wheel, installed with its dependencies into a venv the runtime stage copies
# (with the `k8s` extra: the kubernetes client for the scanner-Job launcher)
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY ewms_config ewms_config
COPY ewms_mq ewms_mq
COPY ewms_pilot ewms_pilot
COPY ewms_rest ewms_rest
COPY ewms_tms ewms_tms
COPY ewms_wms ewms_wms
COPY skydriver skydriver
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist . \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir "$(ls /dist/*.whl)[k8s]"

# -- runtime: the venv, a non-root user, nothing else
FROM python:3.11.11-slim-bookworm
ARG VERSION=dev
LABEL org.opencontainers.image.title="skydriver" \
      org.opencontainers.image.description="SkyDriver REST server: scan requests, manifests, skymaps" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"
RUN groupadd --system --gid 10001 ewms \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin ewms
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SKYDRIVER_HOST=0.0.0.0 \
    SKYDRIVER_PORT=8000
USER 10001:10001
WORKDIR /tmp
EXPOSE 8000
# `GET /` is the unauthenticated health route (503 while MongoDB does not answer)
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/' % os.environ.get('SKYDRIVER_PORT', '8000'), timeout=4)"]
CMD ["skydriver-server"]
