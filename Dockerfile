# A thin wrapper over the Makefile's install and index steps (CPU only).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false \
    PIP_NO_CACHE_DIR=1 ARTICLE_QA_INDEX=/app/index ARTICLE_QA_CACHE_DIR=/app/.cache/article-qa
RUN apt-get update && apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 app
WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY indexing ./indexing
COPY service ./service
COPY eval ./eval
COPY data ./data
# CPU torch first (the CPU wheel index), so no dependency pulls a CUDA build; then every
# package at the version in constraints.txt, as `make install` does.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
    && pip install -c constraints.txt .
# Building the index also exports the ONNX embedding model into ARTICLE_QA_CACHE_DIR,
# so the container starts without exporting it again.
RUN article-qa index build --corpus data/articles --index /app/index && chown -R app:app /app
USER app
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8000/health || exit 1
# serve refuses a non-loopback address while POST/DELETE /documents are open: run with
# `-e ARTICLE_QA_API_KEY=...` (or `-e ARTICLE_QA_ALLOW_OPEN_WRITES=1` to accept that).
CMD ["article-qa", "serve", "--host", "0.0.0.0"]
