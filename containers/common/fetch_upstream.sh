#!/bin/sh
# fetch_upstream.sh MODEL REPO COMMIT DEST [WEIGHTS [SHA256]]
# Upstream code at a pinned commit into DEST, unchanged; fails within seconds where GitHub
# cannot be reached. WEIGHTS (a path inside DEST): its sha256 goes to /opt/gencsp/weights.sha256
# and, when SHA256 is given, must match it.
set -eu
model=$1 repo=$2 commit=$3 dest=$4 weights=${5:-} want=${6:-}
url="${GITHUB:-https://github.com}/${repo}/archive/${commit}.tar.gz"
if ! curl -fsSL --connect-timeout 10 --speed-limit 1024 --speed-time 60 --max-time 3600 \
        -o /tmp/upstream.tar.gz "$url"; then
    echo "gencsp: GitHub is unreachable from this build ($url)." >&2
    echo "gencsp: build gencsp/${model} where github.com is reachable (a workstation or a cluster login node):" >&2
    echo "gencsp:   gencsp build ${model}   then move it with docker save / docker load, or as a SIF (gencsp sif ${model})." >&2
    exit 1
fi
mkdir -p "$dest"
tar -xzf /tmp/upstream.tar.gz -C "$dest" --strip-components=1
rm /tmp/upstream.tar.gz
if [ -n "$weights" ]; then
    mkdir -p /opt/gencsp
    (cd "$dest" && sha256sum "$weights" | tee /opt/gencsp/weights.sha256)
    if [ -n "$want" ]; then
        (cd "$dest" && echo "$want  $weights" | sha256sum -c -)
    fi
fi
