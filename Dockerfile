# syntax=docker/dockerfile:1
# The API image. Same recipe as scripts/setup.sh: torch (CPU build) first, llama-cpp-python compiled with
# portable flags (the default -march=native build dies with SIGILL on CPUs that report AMX), then the
# project with every version pinned by constraints.txt. Compilers stay in the build stage.
# An image runs wherever it is pulled, so it gets set-up's portable (AVX2) build; for AVX-512 hosts only, append
# " -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON" to LLAMA_CMAKE_ARGS (--build-arg) for faster prompt evaluation.
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
ENV PATH=/opt/venv/bin:$PATH PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install torch==2.13.0 --index-url "$TORCH_INDEX"
ARG LLAMA_CPP_VERSION=0.3.36
ARG LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
RUN CMAKE_ARGS="$LLAMA_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL=4 pip install "llama-cpp-python==$LLAMA_CPP_VERSION"
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY rag_service rag_service
RUN pip install --extra-index-url "$TORCH_INDEX" -c constraints.txt ".[llm]"

FROM python:3.11-slim
# libgomp: OpenMP for llama.cpp and the e5 engine.
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 rag \
    && mkdir /data /models && chown rag:rag /data /models
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 \
    RAG_DATA_DIR=/data RAG_MODEL_CACHE_DIR=/models
USER rag
WORKDIR /home/rag
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
ENTRYPOINT ["rag", "serve", "--host", "0.0.0.0"]
CMD ["--port", "8000"]
