"""DRSR's cross-modal stage "FusionNet" (CAPF; REFERENCE_SEEDS 3.4, ``lib/model/fusion_Net.py``):
an RGB and a depth DRSR network (separate weights; :class:`rgbpose.models.drsr.DRSRBackbone`, no
heads and no sharpness) exchange features at the spatial and the temporal level::

    sM, sK = rgb.spatial(clip_rgb, guidance_rgb), depth.spatial(clip_depth, guidance_depth)
                                                                       [B, T, 512] each
    F_s = cross_spatial( L2norm_lastdim(cat[sM, sK]) as [B, 1024, T] ) as [B, T, 512]
    tM, KLM = rgb.temporal(sM + F_s)      tK, KLK = depth.temporal(sK + F_s)
              (t = element-wise max of the three branch cls features, [B, 512])
    logits_rgb = LN + Linear(tM)          logits_depth = LN + Linear(tK)
    F_t = cross_temporal( L2norm(cat[tM, tK]) [B, 1024, 1] );  tM += F_t;  tK += F_t
    en = encoder(cat[tM, tK]): 1024 -> 1024 -> 512 -> 256 -> 256 (BN + ReLU between, none last)
    logits = efc(en) (256 -> C, no bias);  de = decoder(en): 256 -> 256 -> 512 (BN + ReLU each)
    discriminator: fc 512 -> 1 (no bias, shared) on dropout0.5(tM) and dropout0.5(tK)

``cross_spatial`` / ``cross_temporal``: 1x1 conv 1024 -> 512 (no bias), BN, ReLU, 1x1 conv
512 -> 512 (no bias), Dropout 0.4.

``faithful_reshape`` (default True, the reference): the reference turns the [B, T, 1024]
concatenation into the conv's [B, 1024, T] input, and the [B, 512, T] output back into
[B, T, 512], with ``.view`` (a reshape, not a transpose), so channels and frames get mixed.
``faithful_reshape=False`` transposes instead (channels stay channels).

Loss (:meth:`DRSRFusion.loss`, all weights 1): ``LS-CE(logits) + LS-CE(rgb) + LS-CE(depth)``
(label smoothing 0.1) ``+ BCE(rgb -> 1) + BCE(depth -> 0)`` (the modality discriminator)
``+ MSE(de, tM) + MSE(de, tK) + KLM + KLK`` (the unimodal self-distillation KLs, summed over
batch and dimensions, weight 1 from the first epoch).  BCE is computed from the discriminator's
logits (``binary_cross_entropy_with_logits``), the same value as the reference's BCE of the
sigmoid except where the reference clamps ``log`` at -100.

Contract: inputs ``clip_rgb``, ``guidance_rgb``, ``clip_depth``, ``guidance_depth``
([B, C, T, H, W], [B, 1, T, H, W]).  Output dict: ``logits`` (the fusion logits, the one scored
head), ``rgb`` / ``depth`` (the two classifiers' logits), and for the loss ``rgb_temporal`` /
``depth_temporal`` (tM, tK after F_t), ``decoded`` (de), ``rgb_domain`` / ``depth_domain`` (the
discriminator's logits, [B, 1]), ``rgb_spatial_weights`` / ``rgb_cls_mean`` and the same for
depth (the KL inputs).  Every output keeps its batch dimension at batch 1.  In training, the
BatchNorms over [B, C, 1] maps (``cross_temporal``, encoder, decoder) need a batch of >= 2, as
in the reference.

Initialisation (``init_from``, :func:`merge_drsr_streams`): two ``drsr`` checkpoints, the RGB
and the depth stream.  By default the **order** of the stream's ``init_from`` list says which is
which: first RGB, then depth (the reference's ``rgb_checkpoint`` / ``depth_checkpoint``).  The
override ``sources: {rgb: STREAM, depth: STREAM}`` names them explicitly instead (it only
serves the merge).  Each checkpoint's ``backbone.*`` goes to ``backbone.rgb.*`` /
``backbone.depth.*``; its heads (``head.*``) and epoch buffer are skipped, as the reference
skips the ``mlp_head_*`` weights; a missing or mis-shaped weight is an error.

Module names: ``backbone.rgb.*``, ``backbone.depth.*`` (DRSRBackbone), ``backbone.cross_spatial``,
``head.cross_temporal``, ``head.fusion.{encoder,efc,decoder}``, ``head.classifier_rgb``,
``head.classifier_depth``, ``head.discriminator``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rgbpose.models.drsr import (
    DRSRBackbone,
    TemporalFeatures,
    check_eval_sampling,
    check_sizes,
    distillation_kl,
    set_bn_momentum,
)
from rgbpose.models.registry import Contract, ModelInput, register_model


class CrossFusion(nn.Module):
    """1x1 conv 2D -> D (no bias), BN, ReLU, 1x1 conv D -> D (no bias), Dropout 0.4, on
    [B, 2D, L] -> [B, D, L]."""

    def __init__(self, dim: int = 512, dropout: float = 0.4) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(2 * dim, dim, 1, bias=False),
            nn.BatchNorm1d(dim),
            nn.ReLU(),
            nn.Conv1d(dim, dim, 1, bias=False),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _linear_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Linear(cin, cout, bias=False), nn.BatchNorm1d(cout), nn.ReLU()]


class FusionModule(nn.Module):
    """The fusion auto-encoder on [B, 1024]: ``encoder`` 1024 -> 1024 -> 512 -> 256 -> 256,
    ``efc`` 256 -> C (the fusion logits), ``decoder`` 256 -> 256 -> 512 (1x1 convs as
    bias-free linears; BN + ReLU after every layer but the encoder's last)."""

    def __init__(self, channels: int = 1024, latent: int = 256, num_classes: int = 60) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            *_linear_bn_relu(channels, channels),
            *_linear_bn_relu(channels, channels // 2),
            *_linear_bn_relu(channels // 2, channels // 4),
            nn.Linear(channels // 4, latent, bias=False),
        )
        self.efc = nn.Linear(latent, num_classes, bias=False)
        self.decoder = nn.Sequential(
            *_linear_bn_relu(latent, channels // 4), *_linear_bn_relu(channels // 4, channels // 2)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(fusion logits [B, C], decoded [B, channels / 2])."""
        en = self.encoder(x)
        return self.efc(en), self.decoder(en)


class FusionBackbone(nn.Module):
    """The two unimodal networks and the spatial interaction; ``forward -> (rgb, depth)``
    :class:`TemporalFeatures`."""

    def __init__(
        self, rgb: DRSRBackbone, depth: DRSRBackbone, faithful_reshape: bool = True
    ) -> None:
        super().__init__()
        self.rgb, self.depth = rgb, depth
        self.cross_spatial = CrossFusion(rgb.dim)
        self.faithful_reshape = faithful_reshape

    def spatial_fusion(self, s_rgb: torch.Tensor, s_depth: torch.Tensor) -> torch.Tensor:
        """F_s [B, T, D] from the two token sequences [B, T, D] (module docstring)."""
        b, t, d = s_rgb.shape
        x = F.normalize(torch.cat([s_rgb, s_depth], dim=-1), p=2, dim=-1)  # [B, T, 2D]
        x = x.reshape(b, 2 * d, t) if self.faithful_reshape else x.transpose(1, 2)
        f = self.cross_spatial(x)  # [B, D, T]
        return f.reshape(b, t, d) if self.faithful_reshape else f.transpose(1, 2)

    def forward(
        self, clip_rgb: torch.Tensor, guidance_rgb: torch.Tensor, clip_depth: torch.Tensor,
        guidance_depth: torch.Tensor,
    ) -> tuple[TemporalFeatures, TemporalFeatures]:  # fmt: skip
        s_rgb = self.rgb.spatial(clip_rgb, guidance_rgb)
        s_depth = self.depth.spatial(clip_depth, guidance_depth)
        f = self.spatial_fusion(s_rgb, s_depth)
        return self.rgb.temporal(s_rgb + f), self.depth.temporal(s_depth + f)


class FusionHead(nn.Module):
    """The temporal interaction, the fusion module, the two classifiers and the modality
    discriminator; ``forward((rgb, depth) TemporalFeatures) -> outputs dict``."""

    def __init__(self, num_classes: int, dim: int = 512) -> None:
        super().__init__()
        self.cross_temporal = CrossFusion(dim)
        self.fusion = FusionModule(2 * dim, 256, num_classes)
        self.classifier_rgb = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes))
        self.classifier_depth = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes))
        self.discriminator = nn.Linear(dim, 1, bias=False)
        self.discriminator_dropout = nn.Dropout(0.5)

    def forward(self, feats: tuple[TemporalFeatures, TemporalFeatures]) -> dict[str, torch.Tensor]:
        rgb, depth = feats
        t_rgb, t_depth = rgb.cls_max, depth.cls_max
        logits_rgb, logits_depth = self.classifier_rgb(t_rgb), self.classifier_depth(t_depth)
        joint = F.normalize(torch.cat([t_rgb, t_depth], dim=-1), p=2, dim=-1)
        f_t = self.cross_temporal(joint[..., None])[..., 0]
        t_rgb, t_depth = t_rgb + f_t, t_depth + f_t
        logits, decoded = self.fusion(torch.cat([t_rgb, t_depth], dim=-1))
        return {
            "logits": logits,
            "rgb": logits_rgb,
            "depth": logits_depth,
            "rgb_temporal": t_rgb,
            "depth_temporal": t_depth,
            "decoded": decoded,
            "rgb_domain": self.discriminator(self.discriminator_dropout(t_rgb)),
            "depth_domain": self.discriminator(self.discriminator_dropout(t_depth)),
            "rgb_spatial_weights": rgb.spatial_weights,
            "rgb_cls_mean": rgb.cls_mean,
            "depth_spatial_weights": depth.spatial_weights,
            "depth_cls_mean": depth.cls_mean,
        }


class DRSRFusion(nn.Module):
    """FusionNet: ``backbone`` (:class:`FusionBackbone`) + ``head`` (:class:`FusionHead`)."""

    def __init__(self, backbone: FusionBackbone, num_classes: int, label_smoothing: float = 0.1,
                 distill_temperature: float = 0.5) -> None:  # fmt: skip
        super().__init__()
        self.backbone = backbone
        self.head = FusionHead(num_classes, backbone.rgb.dim)
        self.num_classes = num_classes
        self.label_smoothing, self.distill_temperature = label_smoothing, distill_temperature

    def forward_features(self, clip_rgb: torch.Tensor, guidance_rgb: torch.Tensor,
                         clip_depth: torch.Tensor, guidance_depth: torch.Tensor,
                         ) -> tuple[TemporalFeatures, TemporalFeatures]:  # fmt: skip
        return self.backbone(clip_rgb, guidance_rgb, clip_depth, guidance_depth)

    def forward_head(
        self, feats: tuple[TemporalFeatures, TemporalFeatures]
    ) -> dict[str, torch.Tensor]:
        return self.head(feats)

    def forward(self, clip_rgb: torch.Tensor, guidance_rgb: torch.Tensor, clip_depth: torch.Tensor,
                guidance_depth: torch.Tensor) -> dict[str, torch.Tensor]:  # fmt: skip
        return self.forward_head(
            self.forward_features(clip_rgb, guidance_rgb, clip_depth, guidance_depth)
        )

    def loss(self, outputs: Mapping[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """CE x3 + BCE x2 + MSE x2 + KL x2, all weight 1 (module docstring), in fp32."""
        with torch.autocast(labels.device.type, enabled=False):
            o = {k: v.float() for k, v in outputs.items()}
            ce = sum(F.cross_entropy(o[k], labels, label_smoothing=self.label_smoothing)
                     for k in ("logits", "rgb", "depth"))  # fmt: skip
            bce = F.binary_cross_entropy_with_logits(
                o["rgb_domain"], torch.ones_like(o["rgb_domain"])
            ) + F.binary_cross_entropy_with_logits(
                o["depth_domain"], torch.zeros_like(o["depth_domain"])
            )
            mse = F.mse_loss(o["decoded"], o["rgb_temporal"]) + F.mse_loss(
                o["decoded"], o["depth_temporal"]
            )
            kl = sum(
                distillation_kl(o[f"{m}_spatial_weights"], o[f"{m}_cls_mean"],
                                self.distill_temperature)
                for m in ("rgb", "depth")
            )  # fmt: skip
            return ce + bce + mse + kl


# ----------------------------------------------------------------------------- init_from merge
def _roles(sources: Mapping[str, Mapping[str, Any]], model: nn.Module) -> dict[str, str]:
    """{'rgb': stream, 'depth': stream}: the ``sources`` override, else the init_from order."""
    named = (getattr(model, "spec", None) or {}).get("overrides", {}).get("sources")
    if named is not None:
        if not isinstance(named, Mapping) or set(named) != {"rgb", "depth"}:
            raise ValueError(
                "drsr_fusion override sources must be {rgb: STREAM, depth: STREAM}, got "
                f"{named!r}"
            )
        unknown = sorted(str(s) for s in named.values() if s not in sources)
        if unknown or len(sources) != 2 or named["rgb"] == named["depth"]:
            raise ValueError(
                f"drsr_fusion: sources {dict(named)} must name the two init_from streams "
                f"(got {list(sources)})"
            )
        return {"rgb": str(named["rgb"]), "depth": str(named["depth"])}
    if len(sources) != 2:
        raise ValueError(
            f"drsr_fusion: init_from must name two drsr streams, RGB first then depth (got "
            f"{len(sources)}: {', '.join(sources)})"
        )
    rgb, depth = list(sources)
    return {"rgb": rgb, "depth": depth}


def merge_drsr_streams(
    sources: Mapping[str, Mapping[str, Any]], model: nn.Module
) -> dict[str, torch.Tensor]:
    """``init_from`` of a ``drsr_fusion`` stream: the backbones of an RGB and a depth ``drsr``
    checkpoint into ``backbone.rgb`` / ``backbone.depth`` (heads skipped; module docstring)."""
    state = model.state_dict()
    for role, stream in _roles(sources, model).items():
        src = sources[stream]
        where = f"init_from {stream!r} ({src['path']})"
        name = src["meta"].get("model_name")
        if name not in (None, "drsr"):
            raise ValueError(f"{where}: a {name!r} checkpoint; drsr_fusion needs drsr streams")
        prefix = f"backbone.{role}."
        wanted = {k for k in state if k.startswith(prefix)}
        for key, value in src["state"].items():
            key = key.removeprefix("module.")
            if not key.startswith("backbone."):
                continue  # the heads and the epoch buffer
            target = prefix + key.removeprefix("backbone.")
            if target not in state:
                raise ValueError(f"{where}: {key} has no place in drsr_fusion ({target})")
            if state[target].shape != value.shape:
                raise ValueError(
                    f"{where}: {key} has shape {tuple(value.shape)}, drsr_fusion's {target} "
                    f"{tuple(state[target].shape)} (clip_len, in_channels or segments differ?)"
                )
            state[target] = value
            wanted.discard(target)
        if wanted:
            raise ValueError(
                f"{where}: lacks {len(wanted)} backbone weights, e.g. {sorted(wanted)[0]}"
            )
    return state


# ----------------------------------------------------------------------------- registration
def _contract(overrides: Mapping[str, Any]) -> Contract:
    rgb_c, depth_c = int(overrides.get("in_channels", 3)), int(overrides.get("depth_channels", 3))
    return Contract(
        (
            ModelInput("clip_rgb", "C,T,H,W", rgb_c, "model.overrides.in_channels"),
            ModelInput("guidance_rgb", "1,T,H,W (FRP rank-pool map)", 1),
            ModelInput("clip_depth", "C,T,H,W", depth_c, "model.overrides.depth_channels"),
            ModelInput("guidance_depth", "1,T,H,W (FRP rank-pool map)", 1),
        )
    )


@register_model(contract=_contract, merge=merge_drsr_streams)
def drsr_fusion(
    num_classes: int,
    in_channels: int = 3,
    depth_channels: int = 3,
    clip_len: int = 64,
    image_size: int = 224,
    segments: Sequence[int] = (16, 32, 48),
    num_layers: int = 6,
    knn_ratio: float = 0.7,
    dropout: float = 0.1,
    rcm_hidden: int = 256,
    eval_sampling: str = "random",
    faithful_reshape: bool = True,
    label_smoothing: float = 0.1,
    distill_temperature: float = 0.5,
    sources: Mapping[str, str] | None = None,
    bn_momentum: float = 0.01,
) -> DRSRFusion:
    """DRSR FusionNet (CAPF; 79.8 M parameters with 60 classes).

    Overrides: ``in_channels`` / ``depth_channels`` (3 / 3: the depth map is JET-coloured), the
    unimodal sizes as ``drsr`` (``clip_len``, ``image_size``, ``segments``, ``num_layers``,
    ``knn_ratio``, ``dropout``, ``rcm_hidden``, ``eval_sampling``: they must match the
    unimodal checkpoints), ``faithful_reshape`` (True: the reference's reshape, False: a
    transpose), ``label_smoothing`` (0.1), ``distill_temperature`` (0.5) and ``sources``
    ({rgb: STREAM, depth: STREAM}; default: the init_from order, RGB first) and
    ``bn_momentum`` (0.01, as ``drsr``).
    """
    if sources is not None and (
        not isinstance(sources, Mapping) or set(sources) != {"rgb", "depth"}
    ):
        raise ValueError(
            f"drsr_fusion override sources must be {{rgb: STREAM, depth: STREAM}}, got {sources!r}"
        )  # the merge reads it from model.spec
    segments = tuple(segments)
    check_sizes(clip_len, image_size, segments, "drsr_fusion")
    check_eval_sampling(eval_sampling, "drsr_fusion")
    nets = [
        DRSRBackbone(c, clip_len, image_size, segments, num_layers, rcm_hidden, knn_ratio,
                     dropout, eval_sampling)
        for c in (in_channels, depth_channels)
    ]  # fmt: skip
    for net in nets:
        set_bn_momentum(net, bn_momentum)
    return DRSRFusion(FusionBackbone(*nets, faithful_reshape=faithful_reshape), num_classes,
                      label_smoothing, distill_temperature)  # fmt: skip
