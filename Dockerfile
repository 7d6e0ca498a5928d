# The wpfarm image the backup stack runs (code location, daemon, web UI). Built where a registry is
# reachable: `docker build -t wpfarm:latest .` (the machines this project is developed on have none).
FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends zstd gnupg mariadb-client tar openssh-client docker.io \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/wpfarm
COPY pyproject.toml README.md workspace.yaml dagster.production.yaml ./
COPY wpfarm_assets wpfarm_assets
COPY resources resources
COPY sensors sensors
COPY schedules schedules
COPY configs configs
COPY scripts/container-entrypoint scripts/container-entrypoint
# Editable, so configs/ (stacks, templates) resolve next to the code.
RUN pip install --no-cache-dir -e . \
 && mkdir -p /opt/dagster/home && cp dagster.production.yaml /opt/dagster/home/dagster.yaml
ENV DAGSTER_HOME=/opt/dagster/home WPFARM_CONFIG=/opt/wpfarm/configs/farm.yaml
ENTRYPOINT ["/opt/wpfarm/scripts/container-entrypoint"]
CMD ["dagster-daemon", "run"]
