#!/usr/bin/env bash
# Debian packages the local stack and the tests need; installs only what is missing.
#
#   scripts/deps.sh           install what is missing (one apt-get update, only if needed)
#   scripts/deps.sh --check   list what is missing, exit 1 if anything is
#
# Needed: kcat (Kafka CLI checks), docker-compose (Debian's 1.29, for `docker-compose config -q`),
# wrk (HTTP load), postgresql (server binaries for scripts/pg.sh), a Java 17+ runtime and
# maven (scripts/kafka.sh assembles the broker from Maven Central), chromium (the console's
# browser tests drive Debian's Chromium with Playwright: /usr/bin/chromium).
set -euo pipefail

missing=()

have() { command -v "$1" >/dev/null 2>&1; }

have kcat || missing+=(kcat)
have docker-compose || missing+=(docker-compose)
have wrk || missing+=(wrk)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
have java || missing+=(openjdk-17-jre-headless)
have mvn || missing+=(maven)
[ -x /usr/bin/chromium ] || missing+=(chromium)
# a CJK font, so zh-CN pages render as characters (not boxes) in the console's screenshots
compgen -G "/usr/share/fonts/truetype/wqy/wqy-microhei.tt*" >/dev/null || missing+=(fonts-wqy-microhei)

if ((${#missing[@]} == 0)); then
    exit 0
fi

if [[ "${1:-}" == "--check" ]]; then
    echo "missing: ${missing[*]}"
    exit 1
fi

if [[ "$(id -u)" != 0 ]]; then
    echo "deps.sh: missing ${missing[*]}; run as root (or: sudo apt-get install ${missing[*]})" >&2
    exit 1
fi

echo "deps.sh: installing ${missing[*]}" >&2
t0=$SECONDS
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confold \
    "${missing[@]}" </dev/null >/tmp/qingshou-deps-apt.log 2>&1 || {
    tail -n 40 /tmp/qingshou-deps-apt.log >&2
    echo "deps.sh: apt-get install failed" >&2
    exit 1
}
echo "deps.sh: installed in $((SECONDS - t0)) s" >&2
