# syntax=docker/dockerfile:1
#
# One image for every deepfake-stream service: the entrypoint is the console script, and the
# command picks the service (router, worker --backend cpu, modal-bridge, shim, topics --apply).
#
#   docker build -t deepfake-stream .
#   docker run --rm deepfake-stream models
#
# CPU torch by default. The GPU worker's image takes CUDA wheels instead:
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 \
#       -t deepfake-stream:gpu .

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: a virtual environment with the project and its dependencies ---------------------
FROM ${PYTHON_IMAGE} AS build

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv

# torch first, from the PyTorch index: the PyPI wheel pulls several GB of CUDA libraries a
# CPU image never uses. pyproject pins torch==2.13.0, which the local-version wheel
# (2.13.0+cpu) satisfies, so the next steps keep it.
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"

# Dependencies in their own layer, keyed on pyproject.toml only: editing code does not
# reinstall them.
COPY pyproject.toml /src/
RUN python -c "import tomllib; \
project = tomllib.load(open('/src/pyproject.toml', 'rb'))['project']; \
deps = project['dependencies'] + project['optional-dependencies']['server']; \
open('/tmp/requirements.txt', 'w').write('\n'.join(deps))" \
 && pip install -r /tmp/requirements.txt

COPY README.md /src/
COPY deepfake_stream /src/deepfake_stream
COPY consumers /src/consumers
COPY producers /src/producers
COPY routing /src/routing
COPY models /src/models
COPY schemas /src/schemas
# Not editable and no deps: a plain wheel install of the project itself.
RUN pip install --no-deps /src \
 && deepfake-stream --help > /dev/null

# --- runtime ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="deepfake-stream" \
      org.opencontainers.image.description="Detects AI-generated text as an event-driven service on Kafka."

# procps: pgrep for the compose health checks (the services have no HTTP port to probe).
RUN apt-get update \
 && apt-get install -y --no-install-recommends procps \
 && rm -rf /var/lib/apt/lists/*

# Non-root, with a fixed uid so volume permissions are predictable.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home app

COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/app

USER app
WORKDIR /home/app

# Services drain in-flight batches and commit on SIGTERM (WORKER_SHUTDOWN_GRACE_S); give them a
# stop timeout above that (compose: stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["deepfake-stream"]
CMD ["--help"]
