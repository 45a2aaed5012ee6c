#!/usr/bin/env bash
# Refresh the playground's vendored JavaScript (committed, so keel needs no network and
# no build step): the SSE parser eventsource-parser, from npm at a pinned version.
set -euo pipefail
VERSION=4.1.3
target="$(dirname "$0")/../keel/server/ui/vendor/eventsource-parser"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "eventsource-parser@$VERSION" >/dev/null && tar xzf ./*.tgz)
mkdir -p "$target"
for file in parse.js errors.js stream.js; do
    sed 's#^//\# sourceMappingURL.*##' "$work/package/dist/$file" > "$target/$file"
done
cp "$work/package/LICENSE" "$target/LICENSE"
echo "eventsource-parser $VERSION -> $target"
