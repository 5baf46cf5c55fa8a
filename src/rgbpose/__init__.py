"""rgbpose: RGB + skeleton action recognition (RGBPoseConv3D / PoseC3D) as a Snakemake workflow."""

__version__ = "0.1.0"
