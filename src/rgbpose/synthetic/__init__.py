"""The embedded synthetic NTU-like dataset (DESIGN.md section 9).

Writes ``<name>_rgb.avi`` (H.264 in AVI, like the raw NTU videos) and ``<name>.skeleton`` (the NTU
Kinect text format) for every ``SsssCcccPpppRrrrAaaa`` combination of a small config, so every
pipeline stage runs for real without the licensed data.

How a sample is made, one module a step
---------------------------------------
* ``config``: what to make -- ``SynthConfig`` (the sample grid, sizes, the seed), ``sample_names``
  and the supported classes;
* ``body``: performers (proportions, clothing, colours) and the forward kinematics of the
  25-joint Kinect skeleton;
* ``actions``: one performance's random draws and the joint-angle trajectories of every class
  (the class list and what tells the classes apart is there);
* ``scene``: the three cameras, the pinhole projection, and a performance's people and props in
  world coordinates;
* ``skeleton``: the ``.skeleton`` records one camera sees, with the noise bodies;
* ``render``: the RGB frames (OpenCV) and ``render_sample``;
* ``depth``: NTU's masked depth (``render_depth``; written with ``synthesize(depth_dir=...)``);
* ``writer``: the files (``synthesize``, ``write_video``) and ``rgbpose synthesize``.

The contact sheet of a few videos (``rgbpose contact-sheet``) is in ``rgbpose.report``.
"""

from .config import DEFAULT_ACTIONS, SUPPORTED_ACTIONS, SynthConfig, sample_names
from .depth import render_depth, write_depth_frames
from .render import render_sample
from .scene import color_intrinsics, depth_intrinsics, project
from .writer import cli_synthesize, synthesize, write_video

__all__ = [
    "DEFAULT_ACTIONS",
    "SUPPORTED_ACTIONS",
    "SynthConfig",
    "cli_synthesize",
    "color_intrinsics",
    "depth_intrinsics",
    "project",
    "render_depth",
    "render_sample",
    "sample_names",
    "synthesize",
    "write_depth_frames",
    "write_video",
]
