# Consent Ledger: one image for every service of docker-compose.yml (API, projection runner,
# checkpoint signer). Slim, runs as an unprivileged user, holds no key or secret: those are
# mounted at run time (docker-compose.yml's secrets). See docs/operations.md.

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/consent-ledger
WORKDIR /src
# The package from this repository (pyproject.toml names its dependencies); nothing else.
COPY pyproject.toml README.md LICENSE ./
COPY ledger ledger
COPY projections projections
COPY api api
COPY demo demo
RUN /opt/consent-ledger/bin/pip install . && /opt/consent-ledger/bin/pip uninstall -y pip

FROM python:3.11-slim-bookworm
ENV PATH=/opt/consent-ledger/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CONSENT_LEDGER_DATA_DIR=/var/lib/consent-ledger \
    CONSENT_LEDGER_LOG_FORMAT=json
RUN groupadd --system --gid 10001 ledger \
    && useradd --system --uid 10001 --gid ledger --no-create-home \
       --home-dir /var/lib/consent-ledger --shell /usr/sbin/nologin ledger \
    && install -d -o ledger -g ledger -m 0700 /var/lib/consent-ledger
COPY --from=build /opt/consent-ledger /opt/consent-ledger
USER 10001:10001
WORKDIR /var/lib/consent-ledger
EXPOSE 8000
# uvicorn drains requests in flight on SIGTERM; compose's stop_grace_period leaves it the time.
STOPSIGNAL SIGTERM
CMD ["consent-ledger", "serve", "--host", "0.0.0.0"]
