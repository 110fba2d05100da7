# Image for the Prefect workers in docker-compose.yml (CPU build; the GPU worker adds the CUDA torch).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml requirements.lock README.md ./
COPY pipeline_lib ./pipeline_lib
COPY flows ./flows
COPY tasks ./tasks
COPY crawl2model ./crawl2model
COPY configs ./configs
COPY deployments ./deployments
# torch's CPU wheels live on PyTorch's own index; every other pin comes from PyPI.
RUN pip install --no-cache-dir -c requirements.lock --extra-index-url https://download.pytorch.org/whl/cpu .
ENV PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
