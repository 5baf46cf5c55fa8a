#!/usr/bin/env bash
# Report running | success | failed for a job id printed by submit.sh.
state="${LOCALCLUSTER_DIR:-.snakemake/localcluster}"
id="$1"
if [[ -f "$state/$id.exit" ]]; then
    [[ "$(cat "$state/$id.exit")" == "0" ]] && echo success || echo failed
elif [[ -f "$state/$id.pid" ]] && kill -0 "$(cat "$state/$id.pid")" 2>/dev/null; then
    echo running
else
    echo failed
fi
