# NeuroNova: Orthanc 1.10.1 (Debian 12 packages) with the NeuroNova plugin.
# A thin wrapper over scripts/install, the same script CI runs. Configure with environment
# variables (see orthanc.json and docs/configuration.md); secrets must be provided:
#   NEURONOVA_SIGNING_SECRET, NEURONOVA_ADMIN_PASSWORD_HASH (scripts/hash-password),
#   and NEURONOVA_JWKS_URL / NEURONOVA_JWT_ISSUER / NEURONOVA_JWT_AUDIENCE for Keycloak.
FROM debian:12-slim
ENV NEURONOVA_HOME=/opt/neuronova \
    NEURONOVA_VENV=/opt/neuronova/.venv \
    NEURONOVA_DATA_DIR=/var/lib/neuronova \
    PYTHONPATH=/opt/neuronova/.venv/lib/python3.11/site-packages:/opt/neuronova
COPY . /opt/neuronova
RUN /opt/neuronova/scripts/install --runtime-only && rm -rf /var/lib/apt/lists/*
VOLUME /var/lib/neuronova
EXPOSE 8042 4242
# orthanc.json is used as is: ports 8042/4242, remote access on, secrets from the environment.
CMD ["Orthanc", "/opt/neuronova/orthanc.json"]
