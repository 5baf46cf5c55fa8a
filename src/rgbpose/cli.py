"""``rgbpose`` command line: one subcommand per pipeline stage, each a thin entry into the package.

Each subcommand lives in the module that holds its logic as ``cli(argv) -> int``; this file only
dispatches, so ``rgbpose --help`` stays fast (no torch import until a command needs it).

Errors reach the user in one form, on stderr, without a Python traceback::

    rgbpose <command>: error: <file>: <problem>      (a bad input file, a missing file, ...)
    rgbpose <command>: error: <problem>              (no file involved, e.g. a bad option value)
    rgbpose <command>: error: no space left writing <file>
    rgbpose <command>: error: KeyError: 'x' (run with --debug for the traceback)   (a bug)

Exit codes: 0 done, 1 error, 2 usage error (argparse), 3 ``train`` stopped by its time budget,
130 interrupted (Ctrl-C).  ``rgbpose --debug COMMAND ...`` (or ``--debug`` after the command
name, or ``RGBPOSE_DEBUG=1``) adds the traceback.  ``python -m rgbpose`` and ``python -m
rgbpose.cli`` behave exactly like the ``rgbpose`` script.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback

from rgbpose.io import BadSampleError, describe_error

DEBUG_ENV = "RGBPOSE_DEBUG"
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
#: errors that describe bad input or a bad environment, not a bug: no "--debug" hint
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (BadSampleError, OSError, ValueError)

COMMANDS: dict[str, tuple[str, str]] = {
    "synthesize": ("rgbpose.synthetic", "write the embedded synthetic NTU-like dataset"),
    "contact-sheet": ("rgbpose.report", "save a PNG of frames from a few videos"),
    "scan-raw": ("rgbpose.preprocess.scan", "list raw files that are not usable samples"),
    "compress": ("rgbpose.preprocess.compress", "re-encode raw videos to 540p H.264"),
    "extract-poses": ("rgbpose.preprocess.poses", "extract poses (kinect | mediapipe | onnx)"),
    "denoise": ("rgbpose.preprocess.denoise", "denoise / track poses and select persons"),
    "build-annotations": ("rgbpose.preprocess.annotations", "write the PYSKL annotation pickle"),
    "frame-store": ("rgbpose.preprocess.framestore", "store training frames for fast reads"),
    "depth-store": ("rgbpose.preprocess.depth", "DRSR: RGB ROI + masked depth crops per frame"),
    "train": ("rgbpose.engine.train", "train a model (single process or torchrun)"),
    "merge": ("rgbpose.models.convert", "build a stream's init from its init_from checkpoints"),
    "import-pyskl": ("rgbpose.models.pyskl_import", "convert a PYSKL/mmaction2 checkpoint"),
    "test": ("rgbpose.engine.evaluate", "multi-clip test: scores and metrics"),
    "fuse": ("rgbpose.engine.fusion", "late-fuse score files into fusion.txt/json"),
    "predict": ("rgbpose.predict", "top-5 actions for one video"),
    "plot-curves": ("rgbpose.report", "plot training curves for the report"),
}


class _State:
    debug = False  # set by main() from --debug; RGBPOSE_DEBUG=1 works without main()


def debug_enabled() -> bool:
    """True under ``--debug`` or ``RGBPOSE_DEBUG=1`` (also ``true``/``yes``/``on``)."""
    env = os.environ.get(DEBUG_ENV, "").strip().lower()
    return _State.debug or env in ("1", "true", "yes", "on")


def version() -> str:
    """The installed distribution's version, or ``rgbpose.__version__`` when run from a source
    tree that is not installed (``PYTHONPATH=src``)."""
    from importlib import metadata  # noqa: PLC0415

    try:
        return metadata.version("rgbpose")
    except metadata.PackageNotFoundError:
        from rgbpose import __version__  # noqa: PLC0415

        return __version__


def format_error(prog: str, exc: BaseException) -> str:
    """``<prog>: error: <description>``; unexpected exception types (likely bugs) get a hint to
    rerun with ``--debug`` unless the traceback is already shown."""
    line = f"{prog}: error: {describe_error(exc)}"
    if not isinstance(exc, EXPECTED_ERRORS) and not debug_enabled():
        line += " (run with --debug for the traceback)"
    return line


def report_error(prog: str, exc: BaseException, code: int = EXIT_ERROR) -> int:
    """Print ``exc`` for the user (the traceback first under ``--debug``); return ``code``.

    Commands that catch their own errors call this so every command reports alike.
    """
    if debug_enabled():
        traceback.print_exception(exc, file=sys.stderr)
    print(format_error(prog, exc), file=sys.stderr, flush=True)
    return code


def _usage() -> str:
    lines = [
        "usage: rgbpose [--debug] [--version] COMMAND [ARGS...]",
        "",
        "options:",
        "  --debug            show Python tracebacks on errors (also: RGBPOSE_DEBUG=1)",
        "  --version          print the version and exit",
        "",
        "commands:",
    ]
    lines += [f"  {name:<18} {desc}" for name, (_, desc) in COMMANDS.items()]
    lines += ["", "rgbpose COMMAND --help describes a command."]
    return "\n".join(lines)


def _strip_debug(args: list[str]) -> tuple[list[str], bool]:
    """Remove ``--debug`` from a command's arguments (before a ``--`` separator)."""
    end = args.index("--") if "--" in args else len(args)
    kept = [a for a in args[:end] if a != "--debug"]
    return kept + args[end:], len(kept) != end


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``rgbpose [--debug] COMMAND ...`` to ``<module>.cli`` (or ``cli_<command>``)
    and turn any error into one ``rgbpose COMMAND: error: ...`` line (see the module doc)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    _State.debug = False
    while argv and argv[0].startswith("-"):
        opt = argv.pop(0)
        if opt == "--debug":
            _State.debug = True
        elif opt == "--version":
            print(f"rgbpose {version()}")
            return 0
        elif opt in ("-h", "--help"):
            print(_usage())
            return 0
        else:
            print(f"rgbpose: error: unknown option {opt!r}\n\n{_usage()}", file=sys.stderr)
            return EXIT_USAGE
    if not argv:
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"rgbpose: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return EXIT_USAGE
    rest, debug_after = _strip_debug(rest)
    _State.debug = _State.debug or debug_after
    prog = f"rgbpose {name}"
    try:
        module = importlib.import_module(COMMANDS[name][0])
        func = getattr(module, "cli_" + name.replace("-", "_"), None) or module.cli
        return int(func(rest) or 0)
    except KeyboardInterrupt as exc:
        if debug_enabled():
            traceback.print_exception(exc, file=sys.stderr)
        print(f"{prog}: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - every error becomes one line for the user
        return report_error(prog, exc)


if __name__ == "__main__":
    # ``python -m rgbpose.cli`` runs this file as ``__main__``, a second copy of the module:
    # dispatch through ``rgbpose.cli`` itself so the --debug state is the one commands read.
    from rgbpose.cli import main as _main

    sys.exit(_main())
