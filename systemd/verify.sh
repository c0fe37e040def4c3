#!/usr/bin/env bash
# Checks systemd/okta-provwatch.service the way CI can reproduce, on a machine where the
# binary is not installed at /usr/bin:
#   1. `systemd-analyze verify --man=no` (the man page is not installed either) on a copy whose ExecStart= points at a built binary (verify
#      insists that the executable exists) and whose LoadCredential= points at a dummy file;
#   2. `systemd-analyze security --offline=yes` on the unit, failing above MAX_EXPOSURE.
#
# Usage: systemd/verify.sh [path/to/okta-provwatch]
#   default binary: ${CARGO_TARGET_DIR:-target}/release/okta-provwatch, else .../debug/...
# Skips (exit 0, with a notice) when systemd-analyze is not installed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
unit="$here/okta-provwatch.service"
# The exposure score this unit achieves, plus headroom for systemd versions that score
# differently. Raise it only on purpose.
MAX_EXPOSURE="${MAX_EXPOSURE:-2.5}"

if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "verify.sh: systemd-analyze not found; skipping unit checks" >&2
    exit 0
fi

target="${CARGO_TARGET_DIR:-$here/../target}"
bin="${1:-}"
if [[ -z "$bin" ]]; then
    for candidate in "$target/release/okta-provwatch" "$target/debug/okta-provwatch"; do
        if [[ -x "$candidate" ]]; then
            bin="$candidate"
            break
        fi
    done
fi
if [[ -z "$bin" || ! -x "$bin" ]]; then
    echo "verify.sh: no okta-provwatch binary found (build it, or pass its path)" >&2
    exit 1
fi
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "dummy" >"$work/okta-api-token"
sed -e "s|^ExecStart=/usr/bin/okta-provwatch|ExecStart=$bin|" \
    -e "s|^LoadCredential=okta-api-token:.*|LoadCredential=okta-api-token:$work/okta-api-token|" \
    "$unit" >"$work/okta-provwatch.service"

echo "== systemd-analyze verify"
# verify prints warnings on stderr and exits non-zero on errors; warnings about the host
# (no running systemd in a container) are not about this unit, so only our unit's lines count.
out="$(systemd-analyze verify --man=no "$work/okta-provwatch.service" 2>&1)" || {
    echo "$out"
    echo "verify.sh: systemd-analyze verify failed" >&2
    exit 1
}
if grep -F "okta-provwatch.service" <<<"$out"; then
    echo "verify.sh: systemd-analyze verify reported problems with the unit" >&2
    exit 1
fi
echo "ok"

echo "== systemd-analyze security --offline=yes"
sec="$(systemd-analyze security --offline=yes --no-pager "$work/okta-provwatch.service" 2>&1)" || true
echo "$sec" | tail -n 3
score="$(grep -oE 'Overall exposure level for [^:]+: [0-9.]+' <<<"$sec" | grep -oE '[0-9.]+$' || true)"
if [[ -z "$score" ]]; then
    echo "verify.sh: could not read the exposure score" >&2
    exit 1
fi
if awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s > m) }'; then
    echo "verify.sh: exposure $score is above $MAX_EXPOSURE" >&2
    exit 1
fi
echo "exposure $score (limit $MAX_EXPOSURE)"
