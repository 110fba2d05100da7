# Image for the Prefect workers in docker-compose.yml. The CPU build is the default; the GPU worker
# builds with TORCH_INDEX_URL pointing at PyTorch's CUDA wheels (same torch version, other index).
FROM python:3.11-slim
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
WORKDIR /app
ENV PIP_NO_CACHE_DIR=1 PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1 CRAWL2MODEL_HOME=/app
COPY pyproject.toml requirements.lock README.md ./
# torch first, from its own index; the lock pins every other package (its torch line is the CPU build).
RUN grep -v '^torch==' requirements.lock > /tmp/constraints.txt \
 && pip install --index-url "$TORCH_INDEX_URL" "torch==${TORCH_VERSION}"
COPY pipeline_lib ./pipeline_lib
COPY flows ./flows
COPY tasks ./tasks
COPY crawl2model ./crawl2model
COPY configs ./configs
COPY deployments ./deployments
# The stack's extras: S3 data root, Dask scale-out, the Redis dedup index.
RUN pip install -c /tmp/constraints.txt . \
      s3fs==2026.9.0 prefect-dask==0.3.7 distributed==2026.8.0 redis==8.1.0
