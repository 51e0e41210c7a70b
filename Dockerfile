# syntax=docker/dockerfile:1
# Two images from one source tree:
#   docker build --target operator -t REGISTRY/argomlops-operator:0.1.0 .   kopf + hera, no TensorFlow
#   docker build --target trainer  -t REGISTRY/argomlops-trainer:0.1.0 .    TensorFlow with CUDA
# No Docker engine runs in CI: tests/test_dockerfile.py checks that what this file copies, installs and
# runs exists in the project, so it cannot rot silently.

# Builds the argomlops wheel once; the two targets install it, so neither carries the source tree.
FROM python:3.11-slim AS wheel
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY argomlops argomlops
COPY trainer trainer
COPY operator operator
COPY workflows workflows
RUN pip wheel --no-deps --wheel-dir /wheels .

# The kopf operator: `argomlops operator` with the options the Helm chart passes.
FROM python:3.11-slim AS operator
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
COPY --from=wheel /wheels /wheels
# The wheel's file name carries the version; the shell finds it, pip adds the extra.
RUN pip install "$(ls /wheels/argomlops-*.whl)[operator]" && rm -rf /wheels
# uid 1000: the Helm chart's operator Deployment runs as this uid (runAsUser).
RUN useradd --uid 1000 --user-group --no-create-home --shell /usr/sbin/nologin argomlops
USER 1000:1000
ENTRYPOINT ["argomlops", "operator"]

# The trainer: `argomlops train|generate ...` on a GKE GPU node. TensorFlow's and-cuda extra brings the
# CUDA and cuDNN libraries as pip wheels; the NVIDIA driver comes from the node.
FROM python:3.11-slim AS trainer
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
COPY --from=wheel /wheels /wheels
RUN pip install "tensorflow[and-cuda]==2.21.*" "$(ls /wheels/argomlops-*.whl)[trainer]" && rm -rf /wheels
# uid 1000: the argomlops-train WorkflowTemplate runs its pods as this uid, so HOME must belong to it.
RUN useradd --uid 1000 --user-group --create-home --shell /usr/sbin/nologin argomlops
# GKE mounts the node's NVIDIA driver at /usr/local/nvidia; TensorFlow finds libcuda through this path.
ENV LD_LIBRARY_PATH=/usr/local/nvidia/lib64:/usr/local/nvidia/lib \
    PATH=/usr/local/nvidia/bin:$PATH \
    HOME=/home/argomlops
WORKDIR /home/argomlops
USER 1000:1000
ENTRYPOINT ["argomlops"]
CMD ["--help"]
