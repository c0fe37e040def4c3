#!/usr/bin/env bash
# Checks systemd/okta-provwatch.service the way CI can reproduce, on a machine where the
# binary is not installed at /usr/bin:
#   1. `systemd-analyze verify --man=no` (the man page is not installed either) on a copy whose
#      ExecStart= points at a built binary (verify insists that the executable exists);
#   2. no credential is required by the unit (every LoadCredential= is a bare ID, looked up in
#      the credstore and skipped when absent), so no auth mode needs a drop-in;
#   3. for each auth mode (API token, OAuth, encrypted API token): the credentials that mode
#      installs, handed over as systemd would ($CREDENTIALS_DIRECTORY), satisfy a config
#      naming them (`check-config` exits 0), every ID the config names is one the unit
#      declares, and a config naming a credential that is not installed exits 78;
#   4. `systemd-analyze security --offline=yes` on the unit, failing above MAX_EXPOSURE.
#
# Usage: systemd/verify.sh [path/to/okta-provwatch]
#   default binary: ${CARGO_TARGET_DIR:-target}/release/okta-provwatch, else .../debug/...
# Skips the systemd-analyze steps (with a notice) when systemd-analyze is not installed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
unit="$here/okta-provwatch.service"
# The exposure score this unit achieves, plus headroom for systemd versions that score
# differently. Raise it only on purpose.
MAX_EXPOSURE="${MAX_EXPOSURE:-2.5}"

have_analyze=1
if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "verify.sh: systemd-analyze not found; skipping the systemd-analyze checks" >&2
    have_analyze=0
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
sed -e "s|^ExecStart=/usr/bin/okta-provwatch|ExecStart=$bin|" "$unit" >"$work/okta-provwatch.service"

if [[ $have_analyze == 1 ]]; then
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
fi

echo "== no credential is required by the unit"
# ID:/absolute/path fails the start when the file is missing; a bare ID is searched in the
# credstore and skipped when absent.
if grep -E '^LoadCredential(Encrypted)?=[^:]+:' "$unit"; then
    echo "verify.sh: the unit requires a credential file; OAuth or encrypted setups would need a drop-in" >&2
    exit 1
fi
mapfile -t declared < <(sed -n -E 's/^LoadCredential(Encrypted)?=([^:]+)$/\2/p' "$unit")
echo "declared: ${declared[*]}"
echo "ok"

echo "== auth modes"
# A throwaway key: check-config reads it, never signs with it.
pem=$'-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n-----END PRIVATE KEY-----'
# check_mode NAME CONFIG_OKTA_BODY CREDENTIAL_ID CONTENT
check_mode() {
    local name="$1" body="$2" id="$3" content="$4"
    local dir="$work/$name"
    mkdir -p "$dir/creds"
    local found=0
    for d in "${declared[@]}"; do [[ "$d" == "$id" ]] && found=1; done
    if [[ $found == 0 ]]; then
        echo "verify.sh: $name: credential $id is not declared in the unit" >&2
        exit 1
    fi
    printf '[okta]\norg_url = "https://acme.okta.com"\n%s\n[state]\npath = "%s/state.db"\n' \
        "$body" "$dir" >"$dir/config.toml"
    # Not installed: the daemon's own check names the credential and exits 78.
    local rc=0
    err="$(CREDENTIALS_DIRECTORY="$dir/creds" "$bin" check-config --config "$dir/config.toml" 2>&1 >/dev/null)" || rc=$?
    if [[ $rc != 78 ]] || ! grep -qF "$id" <<<"$err"; then
        echo "verify.sh: $name without its credential: expected exit 78 naming $id, got $rc: $err" >&2
        exit 1
    fi
    # Installed (systemd has decrypted it, if encrypted): the config is satisfied.
    printf '%s\n' "$content" >"$dir/creds/$id"
    if ! CREDENTIALS_DIRECTORY="$dir/creds" "$bin" check-config --config "$dir/config.toml" >/dev/null; then
        echo "verify.sh: $name: check-config failed with credential $id installed" >&2
        exit 1
    fi
    echo "$name: ok"
}
check_mode api-token 'api_token_credential = "okta-api-token"' okta-api-token 00dummyTokenForVerify
check_mode oauth $'[okta.oauth]\nclient_id = "0oaverify"\nprivate_key_credential = "okta-oauth-key"' okta-oauth-key "$pem"
check_mode encrypted-api-token 'api_token_credential = "okta-api-token.encrypted"' okta-api-token.encrypted 00dummyTokenForVerify

if [[ $have_analyze == 1 ]]; then
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
fi
