#!/bin/sh
# Fill the WeCom secret into alertmanager.yml from a secret file, then start Alertmanager.
#
# Alertmanager 0.25 reads no `api_secret_file`, and the secret must not sit in the
# repository or in an environment listing, so the container's entrypoint renders the
# config into its own /tmp at start. Usage (docker-compose):
#   entrypoint: ["/bin/sh", "/etc/alertmanager/render-config.sh"]
#   command: ["--storage.path=/alertmanager", "--web.listen-address=:9093"]
#   secrets: [wecom_api_secret, alert_webhook_token]
# With RENDER_ONLY=1 it only writes the rendered file (tests, dry runs) and prints its path.
set -eu

TEMPLATE="${ALERTMANAGER_TEMPLATE:-/etc/alertmanager/alertmanager.yml}"
SECRET_FILE="${WECOM_API_SECRET_FILE:-/run/secrets/wecom_api_secret}"
OUT="${ALERTMANAGER_RENDERED:-/tmp/alertmanager.yml}"
BIN="${ALERTMANAGER_BIN:-alertmanager}"

if [ ! -r "$SECRET_FILE" ]; then
    echo "render-config: cannot read the WeCom secret file $SECRET_FILE" >&2
    exit 2
fi
# the secret is one line; a WeCom secret is base64url-like, so anything else is refused
# rather than escaped for sed and YAML
secret=$(head -n 1 "$SECRET_FILE" | tr -d '\r\n')
case "$secret" in
    "" | *[!A-Za-z0-9_.~+/=-]*)
        echo "render-config: $SECRET_FILE is empty or has characters a WeCom secret has not" >&2
        exit 2
        ;;
esac
umask 077
sed -e "s|__WECOM_API_SECRET__|$secret|g" "$TEMPLATE" > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
if grep -q '__[A-Z_]*__' "$OUT"; then
    echo "render-config: $OUT still has a placeholder" >&2
    exit 2
fi
if [ "${RENDER_ONLY:-0}" = "1" ]; then
    echo "$OUT"
    exit 0
fi
exec "$BIN" --config.file="$OUT" "$@"
