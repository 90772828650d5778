# cor2vox-bids container image (BIDS App).
#
# Build (see docs/containers.md; scripts/docker_test.sh does all of it):
#   scripts/build_wheelhouse.sh                       # wheelhouse/: the package, its dependencies, TORCH_SPEC
#   docker build --network host -t cor2vox/cor2vox-bids:0.1.0 \
#       --build-arg VERSION=0.1.0 --build-arg TORCH_SPEC=torch==2.13.0 .
#
# BASE_IMAGE is a Debian bookworm root file system with Debian's python3 and python3-venv (scripts/docker_up.sh
# makes one with debootstrap; debian:bookworm plus those two packages is equivalent). No RUN step uses the
# network: everything is installed from the wheelhouse with `pip install --no-index --find-links`.
ARG BASE_IMAGE=cor2vox-base:bookworm

# ---- stage 1: install into a virtual environment -------------------------------------------------------------
FROM ${BASE_IMAGE} AS builder
ARG TORCH_SPEC=torch==2.13.0
# Dependencies first (their own layer, reused while only the package changes), PyTorch's headers dropped
# (the image has no compiler to use them), byte code compiled on all cores for a read-only root file system
# (test folders left out: never imported, and one of torch's is Python 3.12 syntax).
COPY wheelhouse/*.whl wheelhouse/requirements-deps.txt /tmp/wheelhouse/
RUN python3 -m venv /opt/cor2vox \
    && /opt/cor2vox/bin/python -m pip install --no-cache-dir --no-index --no-compile \
        --find-links /tmp/wheelhouse -r /tmp/wheelhouse/requirements-deps.txt "${TORCH_SPEC}" \
    && rm -rf /opt/cor2vox/lib/python3.11/site-packages/torch/include \
    && /opt/cor2vox/bin/python -m compileall -q -j 0 -x '/(tests|testing/_internal)/' /opt/cor2vox/lib
COPY wheelhouse/app/ wheelhouse/requirements.txt /tmp/wheelhouse/app/
RUN /opt/cor2vox/bin/python -m pip install --no-cache-dir --no-index --no-deps \
        --find-links /tmp/wheelhouse/app -r /tmp/wheelhouse/app/requirements.txt \
    && /opt/cor2vox/bin/python -m pip check \
    && /opt/cor2vox/bin/cor2vox-bids --version
# The geometry kernels (numba) compiled now, into the image: without this, a container on a read-only root file
# system compiles them for ~25 s in every process. At run time the package copies this cache once into
# $XDG_CACHE_HOME (numba cannot use a folder it cannot write to; cor2vox_bids/geometry/_cache.py). The cache is for
# this machine's CPU type: on another type the first process of a run compiles into $XDG_CACHE_HOME instead.
RUN NUMBA_CACHE_DIR=/opt/cor2vox/numba-cache /opt/cor2vox/bin/python -m cor2vox_bids.geometry.warmup

# ---- stage 2: runtime (no wheelhouse, no caches, no compilers) -------------------------------------------------
FROM ${BASE_IMAGE}
ARG BASE_IMAGE
ARG VERSION=0.1.0
ARG BUILD_DATE=unknown
ARG VCS_REF=unknown
ARG TORCH_SPEC=torch==2.13.0

LABEL org.opencontainers.image.title="cor2vox-bids" \
      org.opencontainers.image.description="BIDS App: synthetic T1-weighted MRI from cortical surfaces (Cor2Vox, 3D Brownian-bridge diffusion) with cortical-thickness QC" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="cor2vox-bids developers" \
      org.opencontainers.image.documentation="docs/containers.md" \
      org.opencontainers.image.base.name="${BASE_IMAGE}" \
      io.cor2vox.torch-spec="${TORCH_SPEC}"

COPY --from=builder /opt/cor2vox /opt/cor2vox

# Any user id on a read-only root file system: everything that writes goes to /tmp (mount a tmpfs there).
# Nothing is downloaded at run time: the demo model is package data, no TemplateFlow, no telemetry.
# COR2VOX_CONTAINER is recorded in the derivatives' dataset_description.json (GeneratedBy.Container).
ENV PATH=/opt/cor2vox/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    LC_ALL=C.UTF-8 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    XDG_CONFIG_HOME=/tmp/.config \
    MPLCONFIGDIR=/tmp/mpl \
    MPLBACKEND=Agg \
    TORCH_HOME=/tmp/torch \
    NUMBA_CACHE_DIR=/opt/cor2vox/numba-cache \
    NIPYPE_NO_ET=1 \
    NO_ET=1 \
    NIPYPE_CONFIG_DIR=/tmp/.nipype \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    COR2VOX_CONTAINER=cor2vox/cor2vox-bids:${VERSION}

WORKDIR /tmp
ENTRYPOINT ["cor2vox-bids"]
