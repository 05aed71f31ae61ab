# The crmstream image: `docker build -t crmstream .` then `docker run --env-file prod.env crmstream`
# (a worker configured by CRM_* variables or files in /run/secrets, see the README's
# "Configuration"). Any other command of the CLI replaces CMD, e.g.
# `docker run --rm crmstream profile <customer_id>`.
# Only the runtime is installed (`pip install .`, no extras): neither the embedded broker and
# Redis (extra "embedded", for development and tests) nor the evaluation's scikit-learn,
# matplotlib and data sets (extra "evaluate"). No secret is ever copied in: .dockerignore
# lets in only the package sources.

# One pinned base for both stages (a patch release on a named Debian); pin its digest too
# (python:3.11.14-slim-bookworm@sha256:...) where builds must be reproducible.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/crmstream
ENV PATH=/opt/crmstream/bin:$PATH
WORKDIR /src
# .dockerignore lets in only pyproject.toml, the README and the four package directories.
COPY . .
RUN pip install .

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="crmstream" \
      org.opencontainers.image.description="Real-time customer intelligence: Kafka events to live Redis profiles" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/crmstream/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 crmstream \
    && useradd --system --uid 10001 --gid crmstream --create-home --home-dir /home/crmstream \
       --shell /usr/sbin/nologin crmstream
COPY --from=build /opt/crmstream /opt/crmstream
# Faust keeps a small data directory (<app id>-data/) in the working directory.
WORKDIR /home/crmstream
USER 10001:10001
ENTRYPOINT ["crmstream"]
CMD ["worker"]
