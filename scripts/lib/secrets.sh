# Sourced by scripts/run and scripts/cluster: the secrets of an installation, from the
# environment or generated once and kept in NEURONOVA_DATA_DIR/secrets (mode 700), exported
# for Orthanc's ${VAR} substitution. Needs ROOT, VENV and NEURONOVA_DATA_DIR; sets
# NEURONOVA_ADMIN_PASSWORD (shown in the banner), exports the JWT and signing secrets and the
# admin password's hash. All nodes of a cluster read the same folder, so they share them.
SECRETS="$NEURONOVA_DATA_DIR/secrets"
mkdir -p "$SECRETS" && chmod 700 "$SECRETS"

# A secret from the environment, else the one generated on the first start.
kept_secret() {  # name, file
  local value="${!1:-}"
  if [[ -z "$value" ]]; then
    [[ -s "$SECRETS/$2" ]] || (umask 077 && "$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(32))' > "$SECRETS/$2")
    value="$(cat "$SECRETS/$2")"
  fi
  printf '%s' "$value"
}
NEURONOVA_ADMIN_PASSWORD="$(kept_secret NEURONOVA_ADMIN_PASSWORD admin-password)"
NEURONOVA_JWT_SECRET="$(kept_secret NEURONOVA_JWT_SECRET jwt-secret)"
NEURONOVA_SIGNING_SECRET="$(kept_secret NEURONOVA_SIGNING_SECRET signing-secret)"
export NEURONOVA_JWT_SECRET NEURONOVA_SIGNING_SECRET
NEURONOVA_ADMIN_PASSWORD_HASH="$(printf '%s\n' "$NEURONOVA_ADMIN_PASSWORD" | "$VENV/bin/python" "$ROOT/scripts/py/hash_password.py")"
export NEURONOVA_ADMIN_PASSWORD_HASH
