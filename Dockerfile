# order-bridge container image. Deploying it on Kubernetes: deploy/README.md and docs/operations.md.
#
#   docker build -t order-bridge:0.1.0 .
#   docker run --rm -p 8080:8080 -v "$PWD/config.toml:/etc/order-bridge/config.toml:ro" \
#       -e SENDCLOUD_PUBLIC_KEY -e SENDCLOUD_SECRET_KEY -e SHOP_A_SECRET order-bridge:0.1.0
#
# The config must listen on 0.0.0.0:8080 ([server] host and port) for the port mapping, the
# HEALTHCHECK and the Kubernetes probes to reach it.
#
# Two stages. The builder builds the wheel and installs it, with the runtime dependencies pinned
# by hash in requirements.lock (`make lock`), into the virtual environment /opt/order-bridge.
# The runtime stage is the same slim Python image (no compilers: every locked dependency ships
# wheels) with only that environment copied in, run as the fixed non-root uid/gid 10001.
# tests/test_deploy.py installs a fresh environment with exactly these pip commands.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- builder
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Dependencies first, so this layer is rebuilt only when the lock file changes. --require-hashes:
# every distribution must match a hash in the lock, or the build stops.
COPY requirements.lock /src/requirements.lock
RUN python -m venv /opt/order-bridge \
    && /opt/order-bridge/bin/pip install --no-cache-dir --require-hashes -r /src/requirements.lock

# The project itself: a wheel built from the sources only (--no-deps: everything it needs is
# already installed from the lock, and nothing unlocked may slip in).
COPY pyproject.toml README.md /src/
COPY adapters /src/adapters
COPY service /src/service
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels /src \
    && /opt/order-bridge/bin/pip install --no-cache-dir --no-deps /wheels/order_bridge-*.whl \
    && /opt/order-bridge/bin/order-bridge --help > /dev/null

# ---------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="order-bridge" \
      org.opencontainers.image.description="Shop order webhooks (Shopify, WooCommerce) to Sendcloud, in batches" \
      org.opencontainers.image.licenses="Apache-2.0"

# PYTHONUNBUFFERED: every JSON log line reaches `kubectl logs` at once.
# PYTHONDONTWRITEBYTECODE: the root filesystem is read-only at run time; the installed packages
# were compiled to bytecode by pip in the builder.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/order-bridge/bin:$PATH

RUN groupadd --system --gid 10001 order-bridge \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin order-bridge

# Owned by root and not writable by the service's user.
COPY --from=builder /opt/order-bridge /opt/order-bridge

# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
EXPOSE 8080

# For plain Docker (Kubernetes ignores HEALTHCHECK and uses the Deployment's probes). slim has no
# curl: Python's standard library asks /healthz; urlopen raises on anything but a 2xx.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]

# Exec form, no shell and no init: order-bridge is PID 1 and receives SIGTERM itself. uvicorn
# installs handlers for SIGTERM and SIGINT (PID 1 gets no default signal actions, handlers do
# run): readiness turns 503, the buffer is flushed within shutdown_timeout_seconds, the process
# exits. It starts no child processes, so there are no zombies to reap; `docker run --init`
# (tini) is harmless but not needed.
ENTRYPOINT ["order-bridge"]
CMD ["serve", "--config", "/etc/order-bridge/config.toml"]
