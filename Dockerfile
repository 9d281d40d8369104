# The orderbus image used by docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY canonical ./canonical
COPY infra ./infra
COPY connectors ./connectors
COPY router ./router
COPY targets ./targets
COPY admin_api ./admin_api
COPY console ./console
COPY orderbus ./orderbus
RUN pip install --no-cache-dir . && useradd --system orderbus
USER orderbus
ENTRYPOINT ["orderbus"]
CMD ["run"]
