# syntax=docker/dockerfile:1
# The Task Management Service (`ewms-tms`) with the HTCondor bindings, for an HTCondor access point.
# The pool's client configuration is mounted from the host at /etc/condor (read-only), the state directory
# at /var/lib/ewms-tms under the same path as the schedd sees it (it writes the job event logs there).
# Build from the repository root:
#   docker build -f docker/tms.Dockerfile --build-arg VERSION=0.1.0 -t ghcr.io/skydriver-ewms/tms:0.1.0 .

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
    && /opt/venv/bin/pip install --no-cache-dir "$(ls /dist/*.whl)[htcondor]"

# -- runtime: the venv, a non-root user, nothing else
FROM python:3.11.11-slim-bookworm
ARG VERSION=dev
LABEL org.opencontainers.image.title="tms" \
      org.opencontainers.image.description="EWMS Task Management Service for one HTCondor access point" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"
RUN groupadd --system --gid 10001 ewms \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin ewms \
    && mkdir -p /etc/condor /var/lib/ewms-tms && chown 10001:10001 /var/lib/ewms-tms && chmod 0700 /var/lib/ewms-tms
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CONDOR_CONFIG=/etc/condor/condor_config \
    TMS_STATE_DIR=/var/lib/ewms-tms
USER 10001:10001
WORKDIR /tmp
# no port, so no HEALTHCHECK: the TMS only makes outgoing calls (the WMS, the schedd)
CMD ["ewms-tms"]
