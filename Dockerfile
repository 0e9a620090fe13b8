# Omnilingo in a container: the same install steps as README's quick start.
#   docker build -t omnilingo .
#   docker run --rm -p 7860:7860 -v omnilingo-hf:/data/hf omnilingo            # CPU
#   docker run --rm --gpus all -p 7860:7860 -v omnilingo-hf:/data/hf omnilingo # NVIDIA GPU
# Keep in step with requirements.txt, packages.txt and README's front matter
# (tests/test_deploy.py checks it).
FROM python:3.11-slim

# Apt packages the app runs: the same list a Hugging Face Space installs. Versions come from
# the Debian release of the base image (packages.txt has no versions, like a Space's).
COPY packages.txt /tmp/packages.txt
# hadolint ignore=DL3008
RUN apt-get update \
    && xargs -a /tmp/packages.txt apt-get install -y --no-install-recommends \
    && rm -rf /var/lib/apt/lists/* /tmp/packages.txt

# Non-root user with UID 1000 (the UID Hugging Face Docker Spaces run as).
RUN useradd --create-home --uid 1000 omnilingo \
    && mkdir -p /data/hf \
    && chown omnilingo:omnilingo /data/hf

WORKDIR /app
# Dependencies first: this layer is reused while only the code changes.
# PyPI's torch wheel carries its own CUDA libraries: it uses a GPU passed with --gpus all, the CPU otherwise.
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

COPY --chown=omnilingo:omnilingo . .

USER 1000:1000
# Model weights live in the volume, downloaded once and kept across containers.
ENV HF_HOME=/data/hf \
    PYTHONUNBUFFERED=1 \
    GRADIO_ANALYTICS_ENABLED=False \
    GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860
VOLUME ["/data/hf"]
EXPOSE 7860

# The first start downloads several GB: give it time before failed checks count.
# Python's urllib, so the image needs no curl; it fails on refused connections and HTTP errors.
HEALTHCHECK --interval=30s --timeout=10s --start-period=10m --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/', timeout=8)"]

CMD ["python", "-m", "app", "--no-browser"]
