"""InfoGCN's information-bottleneck objective as its training script computes it
(REFERENCE_SEEDS 1.4; Chi et al., "InfoGCN", CVPR 2022)::

    L = CE_eps(logits, y) + lambda_2 * L_prior + lambda_1 * || mean_b z_b ||_2

* ``CE_eps``: cross-entropy with label smoothing eps (0.1): ``(1 - eps) * (-log p_y) +
  eps * mean_c(-log p_c)``, which is PyTorch's ``label_smoothing``;
* ``L_prior`` (the reference's "MMD" loss, a first-moment match): for every class c present in
  the batch, the batch mean of the latents labelled c against the class prior ``mu_c``; the mean
  squared error over the present classes x latent dimensions;
* the last term pulls the batch-average latent towards the origin.

The class prior is a fixed matrix with mutually orthogonal rows of norm ``gain`` (3), made by
:func:`class_prior` from a seed.  The reference keeps it as a plain tensor drawn from the global
RNG (so only the seed reproduces it); :class:`InformationBottleneckLoss` holds it as a buffer, so
it is saved in the checkpoint and a test run scores against the same prior as training.  There is
no KL term on the log-variance: it only scales the noise injected into z during training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def class_prior(num_classes: int, dim: int, gain: float, seed: int) -> torch.Tensor:
    """float32 ``[num_classes, dim]`` on the CPU: orthogonal rows of norm ``gain``, drawn from a
    local generator seeded ``seed`` (``nn.init.orthogonal_``); needs ``num_classes <= dim``."""
    if num_classes > dim:
        raise ValueError(
            f"the orthogonal class prior needs num_classes <= latent dim, got {num_classes} > {dim}"
        )
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    prior = torch.empty(num_classes, dim, device="cpu")
    with torch.no_grad():
        nn.init.orthogonal_(prior, gain=gain, generator=gen)
    return prior


def prior_matching_loss(z: torch.Tensor, labels: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the per-class batch means of ``z`` [B, D] and the prior rows
    [K, D] of the classes present in ``labels`` [B] (mean over present classes x D)."""
    onehot = F.one_hot(labels, prior.shape[0]).to(z.dtype)  # [B, K]
    counts = onehot.sum(0)
    present = counts > 0
    class_means = (onehot.t() @ z)[present] / counts[present, None]
    return F.mse_loss(class_means, prior[present].to(z.dtype))


def information_bottleneck_loss(
    logits: torch.Tensor,
    z: torch.Tensor,
    labels: torch.Tensor,
    prior: torch.Tensor,
    *,
    label_smoothing: float = 0.1,
    lambda_1: float = 1e-4,
    lambda_2: float = 0.1,
) -> torch.Tensor:
    """The scalar training loss of the module docstring, in fp32 (autocast off: the class means
    are matmuls that bf16 would round)."""
    with torch.autocast(z.device.type, enabled=False):
        logits, z = logits.float(), z.float()
        ce = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
        matching = prior_matching_loss(z, labels, prior.float())
        return ce + lambda_2 * matching + lambda_1 * torch.linalg.vector_norm(z.mean(0))


class InformationBottleneckLoss(nn.Module):
    """The objective with its fixed class prior as the buffer ``prior`` [K, D] (in the state
    dict, so a checkpoint carries the prior it was trained against)."""

    prior: torch.Tensor

    def __init__(
        self,
        num_classes: int,
        dim: int,
        *,
        gain: float = 3.0,
        seed: int = 1,
        label_smoothing: float = 0.1,
        lambda_1: float = 1e-4,
        lambda_2: float = 0.1,
    ) -> None:
        super().__init__()
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if lambda_1 < 0 or lambda_2 < 0 or gain <= 0:
            raise ValueError("lambda_1 and lambda_2 must be >= 0 and the prior gain > 0")
        self.register_buffer("prior", class_prior(num_classes, dim, gain, seed))
        self.label_smoothing, self.lambda_1, self.lambda_2 = label_smoothing, lambda_1, lambda_2

    def forward(self, logits: torch.Tensor, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return information_bottleneck_loss(
            logits, z, labels, self.prior,
            label_smoothing=self.label_smoothing, lambda_1=self.lambda_1, lambda_2=self.lambda_2,
        )  # fmt: skip
