#!/usr/bin/env bash
# The programs the tests need besides Python packages: graphviz's `dot` (flow pictures),
# Chromium (the HTML report and the Prefect 3 UI are opened in a real headless browser) and
# PostgreSQL (the Prefect 3 server on PostgreSQL: initdb and pg_ctl, which Debian keeps in
# /usr/lib/postgresql/<version>/bin, off PATH).
# Installed with apt-get when this runs as root on Debian/Ubuntu; otherwise one message says
# what is missing and how to install it, and the exit code is 2 (before any test runs).
set -euo pipefail

missing=()
command -v dot >/dev/null 2>&1 || missing+=(graphviz)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing+=(chromium)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null 2>&1 || missing+=(postgresql)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]} (apt-get; the tests need them)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    exit 0
fi
mac=()
for package in "${missing[@]}"; do
    case $package in
        graphviz) mac+=("brew install graphviz") ;;
        chromium) mac+=("brew install --cask chromium") ;;
        postgresql) mac+=("brew install postgresql@16") ;;
    esac
done
echo "error: the tests need ${missing[*]}, which cannot be installed from here (not root, or no apt-get)." \
     "Debian/Ubuntu: sudo apt-get install ${missing[*]}; macOS: $(IFS=';'; echo "${mac[*]}" | sed 's/;/ \&\& /g'); then run make test again." >&2
exit 2
