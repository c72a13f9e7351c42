# syntax=docker/dockerfile:1
# The EWMS pilot (`ewms-pilot`), run by the TMS in HTCondor's container universe (apptainer) or by docker.
# Apptainer-friendly: no ENTRYPOINT (`apptainer exec IMAGE cmd` runs cmd, `apptainer run IMAGE` the pilot),
# any user id, a read-only image: the pilot writes only below its working directory (the job's scratch
# directory) and /tmp. The pilot's executable is where the TMS looks for it (TMS_PILOT_EXECUTABLE).
# The project's reconstructions are installed too, so host-command and in-process (callable) tasks run
# here; container tasks need apptainer or docker inside the job, which this image does not carry.
# Build from the repository root:
#   docker build -f docker/pilot.Dockerfile --build-arg VERSION=0.1.0 -t ghcr.io/skydriver-ewms/pilot:0.1.0 .

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
LABEL org.opencontainers.image.title="pilot" \
      org.opencontainers.image.description="EWMS pilot: consumes events, runs a task per event, publishes results" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"
RUN groupadd --system --gid 10001 ewms \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin ewms \
    && ln -s /opt/venv/bin/ewms-pilot /usr/local/bin/ewms-pilot
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /tmp
# no port, so no HEALTHCHECK
CMD ["ewms-pilot"]
