# Image for the storemon services (used by docker-compose.yml): the package installed
# as a wheel would be (not editable), at the versions of constraints.txt. One image
# runs every service; its command picks one (`storemon worker`, `reporter`, `api`).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml constraints.txt ./
COPY storemon ./storemon
COPY services ./services
COPY schemas ./schemas
# The services run as an unprivileged user whose home is the state folder (a named
# volume mounted there starts out owned by it).
RUN pip install --no-cache-dir -c constraints.txt . && rm -rf /app/build \
    && useradd --system --uid 10001 --user-group --create-home \
        --home-dir /var/lib/storemon storemon
USER storemon
ENV STOREMON_STATE_DIR=/var/lib/storemon
# Healthy while the service in the container answers /healthz on its port.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["storemon", "health"]
CMD ["storemon", "--help"]
