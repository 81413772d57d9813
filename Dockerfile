# One uvicorn worker per container: scale by replicas, not by workers.
# Rules and models are baked in and can be overridden by mounting volumes at /app/rules and
# /app/models; decisions live in the /data volume (SQLite) unless PostgreSQL is configured.
# The base image is pinned by digest (refresh: docker buildx imagetools inspect python:3.11-slim-bookworm)
# and every dependency by version and hash (requirements.lock; regenerate with `make lock`).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
RUN python -m venv /opt/venv
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --no-cache-dir --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY service ./service
COPY offline ./offline
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps .

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="loan-decision" \
      org.opencontainers.image.description="Instant-loan decisioning service: approve, decline or refer in milliseconds" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.documentation="README.md, docs/API.md, docs/RUNBOOK.md"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    LOAN_HOST=0.0.0.0 \
    LOAN_PORT=8000 \
    LOAN_DATA_DIR=/data \
    LOAN_RULES_DIR=/app/rules \
    LOAN_MODELS_DIR=/app/models
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home app
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY rules ./rules
COPY models ./models
RUN mkdir /data && chown app:app /data && chmod 700 /data
USER 10001:10001
EXPOSE 8000
VOLUME ["/data"]
HEALTHCHECK --interval=10s --timeout=2s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=1).status != 200)"]
STOPSIGNAL SIGTERM
CMD ["loan-decision", "serve"]
