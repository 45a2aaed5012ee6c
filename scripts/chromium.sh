#!/usr/bin/env bash
# The playground's tests drive a real browser: Debian's chromium package, through
# Playwright's Python package (Playwright's own browser downloads are not used). Installs
# it when it is missing; needs root or passwordless sudo.
set -euo pipefail
command -v chromium >/dev/null && exit 0
if [ "$(id -u)" = 0 ]; then
    sudo=()
elif sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
else
    echo "chromium is missing and this user cannot install it; as root: apt-get install chromium" >&2
    exit 1
fi
echo "installing chromium (Debian package) for the playground tests..."
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq chromium >/dev/null
