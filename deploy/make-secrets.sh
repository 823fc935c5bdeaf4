#!/usr/bin/env bash
# Secrets for deploy/docker-compose.yml: deploy/.env (passwords, the Erlang cookie, the
# host user) and deploy/secrets/ (RabbitMQ definitions holding the broker passwords'
# hashes, one signing key per process kind, the keys every process trusts, API tokens).
# Both are git-ignored. Run once, with `lianban` and its Python on the PATH (the venv);
# it refuses to overwrite secrets that exist.
set -euo pipefail

deploy=$(cd "$(dirname "$0")" && pwd)
secrets=$deploy/secrets
python=${PYTHON:-python}
if [[ -e $secrets || -e $deploy/.env ]]; then
    echo "$secrets or $deploy/.env exists: move them aside to start afresh" >&2
    exit 1
fi
umask 077
mkdir -p "$secrets/keys" "$deploy/data/materials"

new_password() { "$python" -c 'import secrets; print(secrets.token_urlsafe(24))'; }
# The router and every department that handles catalog items sign their own messages.
read -r -a signers <<<"router $("$python" -c \
    'from contracts.catalog import default_catalog as c; print(*sorted(c().serving_departments()))')"

{
    echo "LIANBAN_UID=$(id -u)"
    echo "RABBITMQ_ERLANG_COOKIE=$(new_password)"
    echo "POSTGRES_PASSWORD=$(new_password)"
} >"$deploy/.env"

passwords=() trusted=()
for signer in "${signers[@]}"; do
    password=$(new_password)
    echo "BROKER_PASSWORD_${signer^^}=$password" >>"$deploy/.env"
    passwords+=("\"lianban-$signer\": \"$password\"")
    # The last line `keys new` prints is the public key's entry for LIANBAN_TRUSTED_KEYS.
    trusted+=("$(lianban keys new "$signer" --into "$secrets/keys/$signer" | tail -n 1)")
done
(IFS=,; echo "{${passwords[*]}}") >"$secrets/broker-passwords.json"
(IFS=,; echo "[${trusted[*]}]") >"$secrets/trusted-keys.json"
lianban broker definitions --passwords "$secrets/broker-passwords.json" \
    --out "$secrets/definitions.json" >/dev/null

# `token new` prints the token on its first line (after ": ") and the entry on its last.
mint() {
    local name=$1 output
    shift
    output=$(lianban token new "$name" "$@")
    sed -n '1s/.*: //p' <<<"$output" >"$secrets/$name-token"
    tail -n 1 <<<"$output"
}
platform=$(mint platform --scope bundles:write --scope bundles:read --scope files:write \
    --scope files:read)
ops=$(mint ops --scope ops)
echo "[$platform,$ops]" >"$secrets/tokens.json"
# The router processes sign their audit records with it (LIANBAN_AUDIT_KEY_FILE).
"$python" -c 'import secrets; print(secrets.token_urlsafe(48))' >"$secrets/audit.key"
# Read by the Prometheus container, which runs as its own user; the directory stays private.
chmod 644 "$secrets/ops-token" "$secrets/definitions.json"

echo "wrote $deploy/.env and $secrets/ (platform token: $secrets/platform-token)"
