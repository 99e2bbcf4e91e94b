# syntax=docker/dockerfile:1
# Two images from one file; they differ only in the torch build (docker-compose.yml picks):
#   docker build -t pathpilot:cpu .                             web, CPU workers, beat, migrate
#   docker build -t pathpilot:cuda --build-arg TORCH_BUILD=cuda .    the GPU worker
# The CPU image takes PyTorch's CPU wheel (about 190 MB, no CUDA libraries); the CUDA image
# takes PyPI's default Linux wheel, which brings CUDA 13's libraries as wheels of their own
# (about 2.7 GB of wheels), so no CUDA base image is needed: the host's NVIDIA driver (one that
# runs CUDA 13) comes in through the NVIDIA container toolkit. Sizes: README, "Scaling out".
ARG TORCH_BUILD=cpu

FROM python:3.11-slim AS base
RUN apt-get update && apt-get install -y --no-install-recommends \
      libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core poppler-utils make \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1
WORKDIR /srv/pathpilot

# The pin is pyproject.toml's: the app's install below then keeps the build chosen here.
FROM base AS torch-cpu
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

FROM base AS torch-cuda
RUN pip install torch==2.13.0

FROM torch-${TORCH_BUILD} AS app
COPY pyproject.toml README.md ./
COPY app app
COPY worker worker
RUN pip install -e '.[scaled]'
# The rest of the source (templates, static, migrations); .dockerignore keeps var/, virtualenvs,
# ./models, .env, caches and the tests out of the build context.
COPY . .
ENV VAR_DIR=/srv/pathpilot/var
RUN pathpilot models fetch
EXPOSE 8000
CMD ["uvicorn", "--factory", "app.main:create_app", "--host", "0.0.0.0", "--port", "8000"]
