# syntax=docker/dockerfile:1
# Scrapeledger: one image for every component; the subcommand picks which (edge, validator, scraper, state).
#   docker build -t scrapeledger:latest .
#   docker run --rm -e KAFKA_BOOTSTRAP_SERVERS=host:9092 -p 3001:3001 scrapeledger:latest          # edge
#   docker run --rm -e KAFKA_BOOTSTRAP_SERVERS=host:9092 -e HEALTH_PORT=9000 scrapeledger:latest scraper
# (`scrapeledger broker` / `up` need Java and Maven, which this image does not have: use compose or Strimzi.)

# ---- builder: install the project and its dependencies into a self-contained venv ----------------
FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# dependencies first (from pyproject's [project].dependencies), so code edits keep this layer cached;
# every dependency ships manylinux wheels for amd64 and arm64, so no compiler is needed
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

COPY scrapeledger ./scrapeledger
COPY ledger ./ledger
COPY processors ./processors
COPY ws_edge ./ws_edge
COPY replay ./replay
RUN pip install --no-deps . \
    && scrapeledger --help > /dev/null

# ---- final: slim runtime, non-root ----------------------------------------------------------------
FROM python:3.11-slim

LABEL org.opencontainers.image.title="scrapeledger" \
      org.opencontainers.image.description="Scrape jobs over WebSocket, recorded in an event ledger on Apache Kafka" \
      org.opencontainers.image.licenses="Apache-2.0"

# numeric uid/gid so Kubernetes' runAsNonRoot can verify it (k8s/*.yaml use 10001 too)
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home --shell /usr/sbin/nologin app \
    && mkdir -p /var/lib/scrapeledger/state /var/lib/scrapeledger/keys \
    && chown -R app:app /var/lib/scrapeledger

COPY --from=builder /opt/venv /opt/venv

# one component per container: every processor serves /metrics on 9000 (EXPOSE below), on all
# interfaces (outside containers the defaults are loopback and one port per component)
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SCRAPELEDGER_STATE_DIR=/var/lib/scrapeledger/state \
    METRICS_PORT=9000 \
    METRICS_HOST=0.0.0.0

USER 10001:10001
WORKDIR /home/app
VOLUME ["/var/lib/scrapeledger"]

# 3001: edge (WebSocket, /healthz, /readyz, /metrics); 9000: processors (/healthz, /readyz, /metrics)
EXPOSE 3001 9000

# no curl in slim: Python's urllib. Set HEALTH_PORT=9000 for validator/scraper/state (compose does).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${HEALTH_PORT:-3001}/healthz', timeout=4)" || exit 1

ENTRYPOINT ["scrapeledger"]
CMD ["edge"]
