# syntax=docker/dockerfile:1
# One scan's scanner server (`python -m skydriver.scanner`, started as a Kubernetes Job by skydriver's k8s
# launcher) and the reconstruction client the pilots run per pixel (`python -m skydriver.recos.client`),
# so SKYDRIVER_RECO_IMAGE may name this image. No ENTRYPOINT: the launcher and the pilots give the command.
# Build from the repository root:
#   docker build -f docker/scanner.Dockerfile --build-arg VERSION=0.1.0 -t ghcr.io/skydriver-ewms/scanner:0.1.0 .

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
LABEL org.opencontainers.image.title="scanner" \
      org.opencontainers.image.description="SkyDriver scanner server and pixel reconstruction client" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"
RUN groupadd --system --gid 10001 ewms \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin ewms
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /tmp
# no port served (the scanner calls skydriver and the broker), so no HEALTHCHECK
CMD ["python", "-m", "skydriver.scanner"]
