#!/usr/bin/env bash
# Trust in the image builds what this host trusts beyond Debian's CA bundle: the extra CAs
# in /usr/local/share/ca-certificates (a TLS-intercepting proxy's, on CI machines) are
# copied into docker/certs/, which both Dockerfiles install (see docker/certs/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."

source_dir="${HOST_CA_DIR:-/usr/local/share/ca-certificates}"
shopt -s nullglob globstar
certs=("$source_dir"/**/*.crt)
if ((${#certs[@]} == 0)); then
    echo "no extra CA certificates in $source_dir"
    exit 0
fi
for cert in "${certs[@]}"; do
    install -m 0644 "$cert" "docker/certs/$(basename "$cert")"
    echo "docker/certs/$(basename "$cert")"
done
