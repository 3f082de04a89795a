# koxpulse for docker-compose and production: `koxpulse run --kafka ...` in a slim image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY koxpulse ./koxpulse
COPY flows ./flows
COPY detectors ./detectors
COPY sinks ./sinks
COPY dashboards ./dashboards
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --home-dir /var/lib/koxpulse koxpulse \
    && mkdir -p /var/lib/koxpulse && chown koxpulse /var/lib/koxpulse
USER koxpulse
WORKDIR /var/lib/koxpulse
# metrics (KOXPULSE_METRICS_PORT)
EXPOSE 9108
ENTRYPOINT ["koxpulse"]
CMD ["run"]
