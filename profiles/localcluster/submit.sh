#!/usr/bin/env bash
# Submit a Snakemake jobscript as a detached local process; print its job id.
set -euo pipefail
jobscript="${@: -1}"
state="${LOCALCLUSTER_DIR:-.snakemake/localcluster}"
mkdir -p "$state"
id="$(date +%s%N)$$"
cp "$jobscript" "$state/$id.sh"
# A fresh session with a minimal environment: nothing is inherited from snakemake but PATH/HOME.
setsid env -i PATH="$PATH" HOME="$HOME" LANG=C.UTF-8 bash -c \
    "bash '$state/$id.sh' > '$state/$id.out' 2>&1; echo \$? > '$state/$id.exit'" \
    < /dev/null > /dev/null 2>&1 &
echo "$!" > "$state/$id.pid"
echo "$id"
