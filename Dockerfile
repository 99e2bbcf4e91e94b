# One image for web, worker and migrations (docker-compose.yml picks the command).
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
      libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core poppler-utils make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /srv/pathpilot
COPY pyproject.toml README.md ./
COPY app app
COPY worker worker
RUN pip install --no-cache-dir -e '.[scaled]'
COPY . .
RUN pathpilot models fetch
ENV VAR_DIR=/srv/pathpilot/var
EXPOSE 8000
CMD ["uvicorn", "--factory", "app.main:create_app", "--host", "0.0.0.0", "--port", "8000"]
