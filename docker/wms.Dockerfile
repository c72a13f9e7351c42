# syntax=docker/dockerfile:1
# The Workflow Management Service (`ewms-wms`). Build from the repository root:
#   docker build -f docker/wms.Dockerfile --build-arg VERSION=0.1.0 -t ghcr.io/skydriver-ewms/wms:0.1.0 .

# -- build: the project's wheel, installed with its dependencies into a venv the runtime stage copies
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
    && /opt/venv/bin/pip install --no-cache-dir /dist/*.whl

# -- runtime: the venv, a non-root user, nothing else
FROM python:3.11.11-slim-bookworm
ARG VERSION=dev
LABEL org.opencontainers.image.title="wms" \
      org.opencontainers.image.description="EWMS Workflow Management Service: workflows, taskforces, queues" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"
RUN groupadd --system --gid 10001 ewms \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin ewms
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    WMS_HOST=0.0.0.0 \
    WMS_PORT=8080
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080
# `GET /v1/` is the unauthenticated health route (503 while MongoDB does not answer)
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/v1/' % os.environ.get('WMS_PORT', '8080'), timeout=4)"]
CMD ["ewms-wms"]
