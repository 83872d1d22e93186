#!/bin/sh
# fetch_upstream.sh MODEL REPO COMMIT DEST [WEIGHTS [SHA256]]
# Upstream code at a pinned commit into DEST, unchanged, from ${GITHUB:-https://github.com}/REPO/archive/
# COMMIT.tar.gz (gencsp points GITHUB at a local mirror when given one). Fails within seconds where
# that cannot be reached, and says so when the commit does not exist. Records
# "REPO COMMIT SHA256-of-the-tarball" in /opt/gencsp/upstream.tsv (gencsp labels the image from it).
# WEIGHTS (a path inside DEST): its sha256 goes to /opt/gencsp/weights.sha256 and, when SHA256 is
# given, must match it.
set -eu
model=$1 repo=$2 commit=$3 dest=$4 weights=${5:-} want=${6:-}
record=${GENCSP_RECORD_DIR:-/opt/gencsp}
url="${GITHUB:-https://github.com}/${repo}/archive/${commit}.tar.gz"
archive=$(mktemp "${TMPDIR:-/tmp}/upstream.XXXXXX")
trap 'rm -f "$archive"' EXIT
code=$(curl -sSL --connect-timeout 10 --speed-limit 1024 --speed-time 60 --max-time 3600 \
        -o "$archive" -w '%{http_code}' "$url") || code=000
case "$code" in
    200) ;;
    404)
        echo "gencsp: ${repo} has no commit ${commit} (${url} answered 404)." >&2
        echo "gencsp: fix the pin in containers/${model}/model.yaml (upstream.commit) and its Dockerfile." >&2
        exit 1 ;;
    *)
        echo "gencsp: GitHub is unreachable from this build (${url}, HTTP status ${code})." >&2
        echo "gencsp: build gencsp/${model} where github.com is reachable (a workstation or a cluster login node):" >&2
        echo "gencsp:   gencsp build ${model}   then move it with docker save / docker load, or as a SIF (gencsp sif ${model})." >&2
        echo "gencsp: or give a mirror of the archives: gencsp build ${model} --upstream DIR (GENCSP_UPSTREAM_MIRROR)." >&2
        exit 1 ;;
esac
mkdir -p "$dest" "$record"
tar -xzf "$archive" -C "$dest" --strip-components=1
printf '%s\t%s\t%s\n' "$repo" "$commit" "$(sha256sum "$archive" | cut -d' ' -f1)" >>"$record/upstream.tsv"
if [ -n "$weights" ]; then
    (cd "$dest" && sha256sum "$weights" | tee "$record/weights.sha256")
    if [ -n "$want" ]; then
        (cd "$dest" && echo "$want  $weights" | sha256sum -c -)
    fi
fi
