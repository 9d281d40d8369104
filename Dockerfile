# The orderbus image used by docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY canonical ./canonical
COPY connectors ./connectors
COPY router ./router
COPY admin_api ./admin_api
RUN pip install --no-cache-dir . && useradd --system orderbus
USER orderbus
ENTRYPOINT ["orderbus"]
CMD ["run"]
