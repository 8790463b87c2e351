# The image of the docker and kubernetes pools (deploy/docker.yaml builds and pushes it):
# the locked runtime dependencies, then the project itself without resolving anything again.
# No secret is baked in: the Reflexio API key comes from its Secret block at run time, the
# Prefect API URL and key from the worker's job template.
# Docker does not run in CI: scripts/dockerfile_steps.py performs these same steps into a
# temporary directory and venv (`make image-steps`, run by .ci/run) and imports every flow.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /opt/reflexio-pipelines
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY reflexio_api/ reflexio_api/
COPY gate/ gate/
COPY core/ core/
COPY tasks/ tasks/
COPY flows/ flows/
COPY deployments/ deployments/
COPY local_stack/ local_stack/
RUN pip install --no-deps .
RUN useradd --create-home --uid 10001 reflexio
USER reflexio
