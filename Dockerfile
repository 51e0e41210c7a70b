# syntax=docker/dockerfile:1
# Two images from one source tree:
#   docker build --target operator -t REGISTRY/argomlops-operator:0.1.0 .   kopf + hera, no TensorFlow
#   docker build --target trainer  -t REGISTRY/argomlops-trainer:0.1.0 .    TensorFlow with CUDA
# Build arguments:
#   BASE_IMAGE  the Python 3.11 image every stage starts from (default: the official one, pinned by digest)
#   TENSORFLOW  the trainer's TensorFlow: tensorflow[and-cuda]==2.21.* (default, for GPU nodes), or
#               tensorflow==2.21.* (the same TensorFlow without the CUDA wheels: a CPU image, as in CI)
#   VERSION, REVISION, SOURCE  the OCI labels: the package version, the git commit, the repository URL
# scripts/test-images builds both targets and runs them (CI); tests/test_dockerfile.py checks what this
# file copies, installs and runs against the project.
#
# Each image is a virtual environment at /opt/argomlops, installed in a stage of its own with every
# version pinned by constraints.txt (scripts/lock), and copied alone onto a fresh base: pip's caches, the
# wheels and the build stages stay behind. No compiler is needed anywhere: every pin is a wheel.

# python:3.11-slim (Debian bookworm) as published; refresh the digest with
#   docker buildx imagetools inspect docker.io/library/python:3.11-slim
# checkov:skip=CKV_DOCKER_7: every FROM is ${BASE_IMAGE}, whose default below is pinned by tag and digest
# checkov:skip=CKV_DOCKER_2: no HEALTHCHECK: Kubernetes ignores it; the chart probes the operator's /healthz, and a training pod is watched by Argo
ARG BASE_IMAGE=docker.io/library/python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

# Builds the argomlops wheel once; the two targets install it, so neither carries the source tree.
FROM ${BASE_IMAGE} AS wheel
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CONSTRAINT=/constraints.txt
WORKDIR /src
# PIP_CONSTRAINT also pins the build backend (setuptools) pip fetches into its isolated build.
COPY constraints.txt /constraints.txt
COPY pyproject.toml README.md ./
COPY argomlops argomlops
COPY trainer trainer
COPY operator operator
COPY workflows workflows
RUN pip wheel --no-deps --wheel-dir /wheels .

# The operator's environment: the wheel with its operator extra, every dependency at its pinned version.
FROM ${BASE_IMAGE} AS operator-venv
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY constraints.txt /constraints.txt
COPY --from=wheel /wheels /wheels
# A venv without pip: the base image's pip installs into it (--python), so the image holds no installer
# of its own. The wheel's file name carries the version; the shell finds it, pip adds the extra.
RUN python3 -m venv --without-pip /opt/argomlops \
    && python3 -m pip --python /opt/argomlops/bin/python install --only-binary=:all: -c /constraints.txt \
       "$(ls /wheels/argomlops-*.whl)[operator]"

# The trainer's environment: TensorFlow (see TENSORFLOW above) and the wheel with its trainer extra.
FROM ${BASE_IMAGE} AS trainer-venv
ARG TENSORFLOW="tensorflow[and-cuda]==2.21.*"
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY constraints.txt /constraints.txt
COPY --from=wheel /wheels /wheels
RUN python3 -m venv --without-pip /opt/argomlops \
    && python3 -m pip --python /opt/argomlops/bin/python install --only-binary=:all: -c /constraints.txt \
       "${TENSORFLOW}" "$(ls /wheels/argomlops-*.whl)[trainer]"

# The kopf operator: `argomlops operator` with the options the Helm chart passes.
FROM ${BASE_IMAGE} AS operator
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=https://github.com/argomlops/argomlops
LABEL org.opencontainers.image.title="argomlops-operator" \
      org.opencontainers.image.description="The argomlops kopf operator: MLOps objects to Argo Workflows" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=operator-venv /opt/argomlops /opt/argomlops
# uid 1000: the Helm chart's operator Deployment runs as this uid (runAsUser).
RUN useradd --uid 1000 --user-group --no-create-home --shell /usr/sbin/nologin argomlops
# PYTHONDONTWRITEBYTECODE: the pod's root filesystem is read-only; pip compiled the .pyc files already.
ENV PATH=/opt/argomlops/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 1000:1000
ENTRYPOINT ["argomlops", "operator"]

# The trainer: `argomlops train|generate ...` on a GKE GPU node. TensorFlow's and-cuda extra brings the
# CUDA and cuDNN libraries as pip wheels; the NVIDIA driver comes from the node.
FROM ${BASE_IMAGE} AS trainer
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=https://github.com/argomlops/argomlops
LABEL org.opencontainers.image.title="argomlops-trainer" \
      org.opencontainers.image.description="The argomlops trainer: VQ-VAE and PixelCNN prior in TensorFlow" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=trainer-venv /opt/argomlops /opt/argomlops
# uid 1000: the argomlops-train WorkflowTemplate runs its pods as this uid, so HOME must belong to it.
RUN useradd --uid 1000 --user-group --create-home --shell /usr/sbin/nologin argomlops
# GKE mounts the node's NVIDIA driver at /usr/local/nvidia; TensorFlow finds libcuda through this path.
# Everything the trainer writes outside its run folder is under TMPDIR and HOME/.cache: the template
# mounts an emptyDir at each, the root filesystem being read-only (the demo data set, the data synced
# from gs://, Keras' and matplotlib's settings).
ENV LD_LIBRARY_PATH=/usr/local/nvidia/lib64:/usr/local/nvidia/lib \
    PATH=/opt/argomlops/bin:/usr/local/nvidia/bin:$PATH \
    PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/argomlops \
    TMPDIR=/tmp \
    ARGOMLOPS_CACHE=/home/argomlops/.cache/argomlops \
    KERAS_HOME=/home/argomlops/.cache/keras \
    MPLCONFIGDIR=/home/argomlops/.cache/matplotlib
WORKDIR /home/argomlops
USER 1000:1000
ENTRYPOINT ["argomlops"]
CMD ["--help"]
