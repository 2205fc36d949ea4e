# Image for the storemon services (used by docker-compose.yml): the package installed
# as a wheel would be (not editable), at the versions of constraints.txt.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml constraints.txt ./
COPY storemon ./storemon
COPY services ./services
COPY schemas ./schemas
RUN pip install --no-cache-dir -c constraints.txt . && rm -rf /app/build
CMD ["storemon", "--help"]
