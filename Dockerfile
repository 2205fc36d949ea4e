# Image for the storemon services (used by docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY storemon ./storemon
COPY services ./services
COPY schemas ./schemas
RUN pip install --no-cache-dir -e .
CMD ["storemon", "--help"]
