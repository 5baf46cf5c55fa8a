#!/usr/bin/env bash
# Cancel the given job ids (process groups started by submit.sh).
state="${LOCALCLUSTER_DIR:-.snakemake/localcluster}"
for id in "$@"; do
    [[ -f "$state/$id.pid" ]] && kill -- "-$(cat "$state/$id.pid")" 2>/dev/null || true
done
