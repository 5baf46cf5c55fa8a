"""``rgbpose`` command line: one subcommand per pipeline stage, each a thin entry into the package.

Each subcommand lives in the module that holds its logic as ``cli(argv) -> int``; this file only
dispatches, so ``rgbpose --help`` stays fast (no torch import until a command needs it).
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "synthesize": ("rgbpose.synthetic", "write the embedded synthetic NTU-like dataset"),
    "contact-sheet": ("rgbpose.synthetic", "save a PNG of frames from a few videos"),
    "compress": ("rgbpose.preprocess.compress", "re-encode raw videos to 540p H.264"),
    "extract-poses": ("rgbpose.preprocess.poses", "extract poses (kinect | mediapipe | onnx)"),
    "denoise": ("rgbpose.preprocess.denoise", "denoise / track poses and select persons"),
    "build-annotations": ("rgbpose.preprocess.annotations", "write the PYSKL annotation pickle"),
    "train": ("rgbpose.engine.train", "train a model (single process or torchrun)"),
    "merge": ("rgbpose.models.convert", "merge rgb_only + pose_only into an RGBPoseConv3D init"),
    "import-pyskl": ("rgbpose.models.convert", "convert a PYSKL/mmaction2 checkpoint"),
    "test": ("rgbpose.engine.evaluate", "multi-clip test: scores and metrics"),
    "fuse": ("rgbpose.engine.fusion", "late-fuse score files into fusion.txt/json"),
    "predict": ("rgbpose.predict", "top-5 actions for one video"),
    "plot-curves": ("rgbpose.report", "plot training curves for the report"),
}


def _usage() -> str:
    lines = ["usage: rgbpose COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<18} {desc}" for name, (_, desc) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``rgbpose COMMAND ...`` to ``<module>.cli`` (or ``cli_<command>``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"rgbpose: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    func = getattr(module, "cli_" + name.replace("-", "_"), None) or module.cli
    return int(func(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
