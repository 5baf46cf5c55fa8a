"""Per-video preprocessing stages: scan-raw, compress, extract-poses, denoise, build-annotations.

``stage`` holds what the per-sample stages share (inputs, bad-sample options, the sample runner
and its progress lines); ``posedict`` the pose dict contract every stage reads and writes.
"""
