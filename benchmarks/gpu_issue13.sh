#!/usr/bin/env bash
# Issue 13's GPU checks (one H200, 16 cores), in two parts of under 10 minutes each, results
# under $OUT. Run from the repository root of a checkout on the GPU machine:
#
#   bash benchmarks/gpu_issue13.sh synthetic   # the step on synthetic inputs (~4 min)
#   bash benchmarks/gpu_issue13.sh realdata    # real-clip training, 15 workers (~5 min)
#
# The GPU machine has torch, torchvision and numpy but not our pins: the realdata part needs
# decord (a wheel in .whl/, installed to /tmp/site) and, having no mediapipe, the real clip and
# its poses prepared here first, in a folder git ignores:
#
#   echo /.gpu13/ >> .git/info/exclude; mkdir -p .gpu13
#   cp ../shared/data/real/ntu_sample.avi .gpu13/
#   .venv/bin/python benchmarks/train_realdata.py --device cpu --videos 1 --clips 1 \
#       --models pose_only --save-poses .gpu13/poses.pkl --out /tmp/poses_run.tsv
#   (decord 0.6.0 for cp312: pip download --no-deps --only-binary=:all: --python-version 3.12
#    --platform manylinux2010_x86_64 -d .whl decord==0.6.0; see the device tool's README)
#
# What they should show (the issue's targets):
#   synthetic: clips/s of each model at its recipe batch >= 2x the issue's table (pose_only 379,
#     rgb_only 333, rgbpose_conv3d 106 / 193 at batch 6 / 24, posec3d 303), the best of the
#     precision / memory-format rows or the CUDA-graph row; warmup_s is the compile time.
#   realdata: vs_synthetic >= 0.9 for rgb_only, pose_only, rgbpose_conv3d with 15 workers (the
#     _store rows; the _gpudecode file: frames decoded by nvJPEG), data_wait_share near 0.
set -euo pipefail
part=${1:?usage: gpu_issue13.sh synthetic|realdata}
OUT=${OUT:-/tmp/gpu_issue13}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpu.txt" || true

case "$part" in
synthetic)
    for setting in "fp32" "fp32 --channels-last" "bf16" "bf16 --channels-last"; do
        set -- $setting
        tag="$1${2:+_cl}"
        python benchmarks/train_throughput.py --device cuda --precision $setting \
            --out "$OUT/synthetic_$tag.tsv"
    done
    # CUDA graphs on the recipes' settings; a model that does not compile in time is reported
    timeout 240 python benchmarks/train_throughput.py --device cuda --precision bf16 \
        --channels-last --compile --compile-mode reduce-overhead --warmup 3 \
        --out "$OUT/synthetic_bf16_cl_cudagraphs.tsv" || echo "cudagraphs run: exit $?"
    ;;
realdata)
    if [ -d .whl ]; then
        python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
        export PYTHONPATH="$PYTHONPATH:/tmp/site"
    fi
    common=(--device cuda --workers 15 --clip .gpu13/ntu_sample.avi --poses .gpu13/poses.pkl)
    python benchmarks/train_realdata.py "${common[@]}" \
        --synthetic "$OUT/synthetic_bf16_cl.tsv" --out "$OUT/realdata.tsv" || true
    python benchmarks/train_realdata.py "${common[@]}" --source store \
        --models rgb_only rgbpose_conv3d --set data.rgb_decode_on_device=true \
        --out "$OUT/realdata_gpudecode.tsv" || true
    ;;
*)
    echo "unknown part $part (synthetic | realdata)" >&2
    exit 2
    ;;
esac
ls -l "$OUT"
