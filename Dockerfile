# syntax=docker/dockerfile:1
# RustyFlower in a container (docs/container.md). One image, every role; the entrypoint is
# the `rustyflower` command and the command picks the role:
#   serve --host 0.0.0.0        the HTTP API and the dashboard at /ui/ (the default)
#   worker --no-scheduler       activities and timers
#   worker --scheduler          the same, and the cron scheduler (one leads, by lease)
# Nothing secret is baked in: the Redis URL, the API tokens and the snapshot keys come
# at run time (environment or mounted files).

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core ./core
COPY adapters ./adapters
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
# server: the API and dashboard; aws, azure: failover and failback to the clouds
ARG EXTRAS=server,aws,azure
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --system --gid 10001 rustyflower \
 && useradd --system --uid 10001 --gid rustyflower --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin rustyflower
COPY --from=build /wheels /tmp/wheels
RUN wheel="$(ls /tmp/wheels/rustyflower-*.whl)" \
 && python -m pip install --no-cache-dir "${wheel}[${EXTRAS}]" \
 && rm -rf /tmp/wheels
COPY --chmod=0755 container/healthcheck.py /usr/local/bin/rustyflower-healthcheck
# your activities go here: mount them, or COPY them in an image built FROM this one
WORKDIR /app
RUN chown rustyflower:rustyflower /app
USER 10001:10001
EXPOSE 8080
# serve: GET /healthz (Redis answers); worker: this host's worker beats and is healthy
HEALTHCHECK --interval=30s --timeout=15s --start-period=30s --retries=3 \
  CMD ["rustyflower-healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["rustyflower"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
