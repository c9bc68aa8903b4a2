# sparseretr HTTP service. CPU image by default; the GPU compose variant passes a CUDA wheel index.
#   docker build -t sparseretr .
#   docker build --build-arg TORCH_INDEX_URL=https://pypi.org/simple -t sparseretr:gpu .   (CUDA torch)
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/cache/huggingface \
    TOKENIZERS_PARALLELISM=false \
    SPARSERETR_HOST=0.0.0.0 \
    SPARSERETR_PORT=8000 \
    SPARSERETR_INDEX_PATH=/indexes/scifact \
    SPARSERETR_DATA_PATH=/data/beir/scifact

# curl for the healthcheck; nothing else from apt.
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/*

# torch first, from the CPU (or CUDA) wheel index: a bare `pip install torch` from PyPI would
# pull a multi-GB CUDA build into the CPU image.
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"

WORKDIR /app
COPY pyproject.toml README.md ./
COPY sparseretr ./sparseretr
COPY index ./index
COPY kernels ./kernels
COPY service ./service
COPY eval ./eval
RUN pip install .

RUN useradd --create-home --uid 10001 sparseretr \
    && mkdir -p /indexes /cache/huggingface /data \
    && chown -R sparseretr /indexes /cache /data
USER sparseretr

EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8000/healthz || exit 1
CMD ["sparseretr", "serve"]
