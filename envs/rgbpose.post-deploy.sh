#!/usr/bin/env bash
# Post-deploy script of envs/rgbpose.yaml.  Snakemake finds it by name (<env>.yaml ->
# <env>.post-deploy.sh), runs it once inside the freshly created env (after `source activate`,
# so `python` is the env's) and includes its content in the env hash.
#
# mediapipe 0.10.21 without its dependencies: its own pins would pull jax and a protobuf >= 5;
# what it needs at run time (absl-py, attrs, flatbuffers, protobuf 4.25, sentencepiece, numpy,
# opencv, matplotlib) is pinned in rgbpose.yaml.  0.10.21 is the last release that ships the pose
# model files, so the mediapipe backend runs offline.
set -euo pipefail
python -m pip install --no-deps mediapipe==0.10.21
