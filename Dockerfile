# NeuroNova: Orthanc 1.13.0 + Python plugin 7.1 (Python 3.14) + DICOMweb 1.24 + GDCM 1.8 +
# PostgreSQL 5.0 from Debian forky's packages, with the NeuroNova plugin and its venv.
#
# Based on debian:forky-slim, not on orthancteam/orthanc: these are exactly the packages that
# CI tests (scripts/runtime-packages; on a Debian 12/13 machine scripts/install puts the same
# packages in a forky root filesystem), installed by the same script, whereas the orthancteam
# image carries its own builds of Orthanc and of a dozen plugins that nothing here tests.
# On forky scripts/install runs "native": the packages go onto the system itself.
#
# Configure with environment variables (see orthanc.json and docs/configuration.md); secrets
# must be provided: NEURONOVA_SIGNING_SECRET, NEURONOVA_ADMIN_PASSWORD_HASH (scripts/hash-password),
# and NEURONOVA_JWKS_URL / NEURONOVA_JWT_ISSUER / NEURONOVA_JWT_AUDIENCE for Keycloak.
FROM debian:forky-slim
ENV NEURONOVA_HOME=/opt/neuronova \
    NEURONOVA_VENV=/opt/neuronova/.venv \
    NEURONOVA_DATA_DIR=/var/lib/neuronova \
    PYTHONPATH=/opt/neuronova/.venv/lib/python3.14/site-packages:/opt/neuronova
COPY . /opt/neuronova
RUN /opt/neuronova/scripts/install --runtime-only \
 && apt-get purge -y -qq --auto-remove g++ python3-dev \
 && rm -rf /var/lib/apt/lists/* /root/.cache
VOLUME /var/lib/neuronova
EXPOSE 8042 4242
# orthanc.json is used as is: ports 8042/4242, remote access on, secrets from the environment.
# runtime-exec preloads scripts/lib/preload.c (thread stack floor, DICOM on loopback) into Orthanc.
CMD ["/opt/neuronova/scripts/runtime-exec", "/usr/sbin/Orthanc", "/opt/neuronova/orthanc.json"]
