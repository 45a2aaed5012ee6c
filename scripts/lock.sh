#!/usr/bin/env bash
# Writes the locks the project's own set-up and CI install (requirements/*.txt) from
# pyproject.toml's ranges. Pass a venv's python to lock the versions it has (what the
# suite last ran with) wherever they fit the ranges: bash scripts/lock.sh .venv/bin/python
set -euo pipefail
cd "$(dirname "$0")/.."
constraints=()
if [ $# -ge 1 ]; then
    "$1" -m pip list --format=freeze --exclude-editable | grep -v "^keel-text" > /tmp/keel-lock-constraints.txt
    constraints=(--constraint /tmp/keel-lock-constraints.txt)
fi
for lock in "run:server,models" "dev:dev"; do
    name="${lock%%:*}"
    extras=()
    IFS=, read -ra wanted <<< "${lock#*:}"
    for extra in "${wanted[@]}"; do extras+=(--extra "$extra"); done
    uv pip compile pyproject.toml "${extras[@]}" "${constraints[@]}" --python-version 3.11 \
        --no-annotate --no-header --quiet -o "requirements/$name.txt"
    sed -i "1i # keel's $name environment, locked by scripts/lock.sh from pyproject.toml's ranges" \
        "requirements/$name.txt"
done
