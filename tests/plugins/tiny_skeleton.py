"""A plug-in outside the package: a data modality and a model with its own input contract.

``tests/test_plugins.py`` declares them as a stream through a run config's ``imports:`` and
checks that the workflow plans, and the engine trains and tests, them with no edit to the
package.  The modality feeds raw keypoints (``keypoint`` [M, T, V, 2] per view, the input key
a GCN takes), which must not collide with the on-device heatmap keypoints.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from rgbpose.data.config import DataOutput, register_pipeline
from rgbpose.models.registry import Contract, ModelInput, register_model


@dataclass(frozen=True)
class TinySkeletonConfig:
    """``data:`` of the tiny skeleton modality."""

    modality: str = "tiny_skeleton"
    clip_len: int = 8
    max_persons: int = 2

    def outputs(self, layout=None) -> tuple[DataOutput, ...]:
        return (DataOutput("keypoint", 2, self.clip_len, "x, y", "data.clip_len"),)


class TinySkeletonDataset(Dataset):
    """``clip_len`` evenly spaced frames of the first ``max_persons`` persons, one view."""

    def __init__(self, cfg, annotations, mode, *, video_dir=None, layout, source, views=None):
        self.cfg, self.annotations, self.layout = cfg, annotations, layout

    def __len__(self) -> int:
        return len(self.annotations)

    def content_hash(self) -> str:
        from rgbpose.data.records import annotations_hash

        return annotations_hash(self.annotations)

    def __getitem__(self, index: int) -> dict:
        ann = self.annotations[index]
        kp = np.asarray(ann["keypoint"], np.float32)[: self.cfg.max_persons]
        t = kp.shape[1]
        inds = np.linspace(0, t - 1, self.cfg.clip_len).round().astype(int)
        out = np.zeros((self.cfg.max_persons, self.cfg.clip_len, kp.shape[2], 2), np.float32)
        out[: kp.shape[0]] = kp[:, inds] / np.asarray(ann["img_shape"][::-1], np.float32)
        return {
            "keypoint": torch.from_numpy(out)[None],
            "label": int(ann["label"]),
            "frame_dir": ann["frame_dir"],
        }


register_pipeline("tiny_skeleton", TinySkeletonConfig, TinySkeletonDataset)


class TinyMLP(nn.Module):
    def __init__(self, num_classes: int, joints: int, frames: int, hidden: int) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Flatten(), nn.Linear(2 * joints * frames * 2, hidden))
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, keypoint: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.backbone(keypoint)))

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(outputs, labels)


@register_model(
    contract=Contract((ModelInput("keypoint", "M,T,V,C", 2, "model.overrides (C = x, y)"),))
)
def tiny_skeleton_mlp(
    num_classes: int, joints: int = 17, frames: int = 8, hidden: int = 16
) -> TinyMLP:
    """Two linear layers over the flattened keypoints of two persons."""
    return TinyMLP(num_classes, joints, frames, hidden)
