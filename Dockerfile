# One uvicorn worker per container: scale by replicas, not by workers.
# Rules and models are baked in and can be overridden by mounting volumes at /app/rules and
# /app/models; decisions live in the /data volume (SQLite) unless PostgreSQL is configured.

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY offline ./offline
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LOAN_HOST=0.0.0.0 \
    LOAN_PORT=8000 \
    LOAN_DATA_DIR=/data \
    LOAN_RULES_DIR=/app/rules \
    LOAN_MODELS_DIR=/app/models
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home app
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/*.whl && rm -rf /wheels
WORKDIR /app
COPY rules ./rules
COPY models ./models
RUN mkdir /data && chown app:app /data
USER 10001:10001
EXPOSE 8000
VOLUME ["/data"]
HEALTHCHECK --interval=10s --timeout=2s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=1).status != 200)"]
STOPSIGNAL SIGTERM
CMD ["loan-decision", "serve"]
