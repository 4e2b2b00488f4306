# The weekly verdict digest in a container (untested on the project's CI machine, which
# has no Docker engine; tests/test_deploy.py builds and runs it where `docker info` works).
#   docker build -t weekly-digest .
#   docker run -d --name digest-web -p 8000:8000 -v digest-data:/data \
#       -e DIGEST_SECRET_KEY=… -e DIGEST_BASE_URL=https://news.example.com weekly-digest
#   docker run -d --name digest-scheduler --no-healthcheck -v digest-data:/data \
#       -e DIGEST_SECRET_KEY=… weekly-digest python /app/scheduler.py
FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir --upgrade pip
# The lock first: the dependency layer is rebuilt only when the lock changes.
COPY requirements/lock.txt requirements/lock.txt
COPY pyproject.toml setup.py README.md ./
COPY digest digest
COPY subscribers subscribers
COPY templates templates
COPY migrations migrations
RUN /opt/venv/bin/pip install --no-cache-dir -c requirements/lock.txt '.[postgres]'

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /data --create-home digest
COPY --from=build /opt/venv /opt/venv
COPY scheduler.py /app/scheduler.py
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DIGEST_DATABASE_URL=sqlite:////data/digest.db \
    DIGEST_OUTBOX=/data/outbox \
    DIGEST_LOG_FORMAT=json
WORKDIR /data
USER digest
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"
CMD ["sh", "-c", "digest init && exec digest serve --host 0.0.0.0 --port 8000"]
