"""Networks: MONAI backbones that also return multi-scale decoder features, and the representation head.

``SegNet.forward(x)`` returns ``(logits, feats)``: logits ``B, C, *S`` and a list of decoder feature maps ordered
coarse to fine (bottleneck first), each ``B, C_i, *S_i``. The ACTION++ losses need those features; we read them with
forward hooks on the MONAI modules, so the backbone stays the library's own code.

The representation head of the official code upsamples every feature map to full resolution, concatenates them and
applies a 3x3 and a 1x1 convolution, which costs more than the network itself at 496 channels (method.md §10). Ours is
point-wise: :func:`gather_points` picks the feature vector of each map at the sampled pixels (nearest-neighbour
upsampling evaluated only where needed) and :class:`RepresentationHead` is a two-layer MLP (the 1x1-conv head of ReCo).
Its cost scales with the number of sampled pixels, not with the image size.
"""

from __future__ import annotations

import torch
from monai.networks.layers import Norm
from monai.networks.nets import BasicUNet, UNet, VNet
from torch import nn

from actionpp.config import Config


class SegNet(nn.Module):
    """A MONAI backbone plus forward hooks that collect decoder features.

    Args:
        backbone: the MONAI network.
        feature_modules: modules whose outputs are the decoder features, coarse to fine.
    """

    def __init__(self, backbone: nn.Module, feature_modules: list[nn.Module], feature_channels: list[int]):
        super().__init__()
        self.backbone = backbone
        self.feature_channels = list(feature_channels)
        self._feats: list[torch.Tensor] = []
        self._feature_ids = [id(m) for m in feature_modules]
        for m in feature_modules:
            m.register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, inputs, output: torch.Tensor) -> None:
        self._feats.append(output)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        self._feats = []
        logits = self.backbone(x)
        feats, self._feats = self._feats, []
        return logits, feats


def _unet(cfg: Config, in_channels: int, num_classes: int) -> SegNet:
    strides = (2,) * (len(cfg.channels) - 1)
    net = UNet(cfg.dims, in_channels, num_classes, channels=cfg.channels, strides=strides, num_res_units=2,
               norm=Norm.BATCH, dropout=0.0)
    # MONAI's UNet nests Sequential(down, SkipConnection(Sequential(...)), up); the innermost submodule is the bottom.
    ups, seq = [], net.model
    while isinstance(seq, nn.Sequential) and len(seq) == 3:
        ups.append(seq[2])
        seq = seq[1].submodule
    bottom = seq
    # ups[0] is the outermost up-sampling block: it produces the logits, so it is not a feature.
    modules = [bottom] + ups[1:][::-1]
    ch = list(cfg.channels)
    # bottom outputs channels[-1]; the up block at depth d outputs channels[d-1]
    feat_ch = [ch[-1]] + [ch[d - 1] for d in range(len(ch) - 2, 0, -1)]
    if cfg.head_full_res:  # the top block is Sequential(transposed conv -> C channels at full resolution, unit)
        modules.append(ups[0][0])
        feat_ch.append(num_classes)
    return SegNet(net, modules, feat_ch)


def _basicunet(cfg: Config, in_channels: int, num_classes: int) -> SegNet:
    """The 2D UNet of the paper's ACDC experiments (SSL4MIS): two conv-BN-LeakyReLU per level, transposed-conv
    up-sampling, widths ``channels`` (default 16..256). Its decoder features (bottleneck and the four up blocks,
    256 + 128 + 64 + 32 + 16 = 496 channels) are the ones the official 2D code concatenates."""
    ch = list(cfg.channels)
    net = BasicUNet(cfg.dims, in_channels, num_classes, features=(*ch, ch[0]), norm=("batch", {}),
                    act=("LeakyReLU", {"negative_slope": 0.01, "inplace": True}), dropout=0.0)
    modules = [net.down_4, net.upcat_4, net.upcat_3, net.upcat_2, net.upcat_1]
    return SegNet(net, modules, [ch[4], ch[3], ch[2], ch[1], ch[0]])


def _vnet(cfg: Config, in_channels: int, num_classes: int) -> SegNet:
    net = VNet(spatial_dims=cfg.dims, in_channels=in_channels, out_channels=num_classes, dropout_dim=cfg.dims)
    modules = [net.down_tr256, net.up_tr256, net.up_tr128, net.up_tr64, net.up_tr32]
    return SegNet(net, modules, [256, 256, 128, 64, 32])


def build_network(cfg: Config, in_channels: int, num_classes: int) -> SegNet:
    """The one network factory: ``cfg.network`` in {unet, basicunet, vnet}, ``cfg.dims`` in {2, 3}."""
    return {"unet": _unet, "basicunet": _basicunet, "vnet": _vnet}[cfg.network](cfg, in_channels, num_classes)


def gather_points(feats: list[torch.Tensor], index: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Feature vectors of every map at the given full-resolution pixels (nearest-neighbour upsampling).

    Args:
        feats: maps ``B, C_i, *S_i``.
        index: ``N`` flat indices into a ``B, *shape`` label map.
        shape: full-resolution spatial shape ``S``.

    Returns:
        ``N, sum(C_i)``: for pixel ``(b, p)`` and map ``i`` the vector at ``floor(p * S_i / S)``.
    """
    b, *coords = torch.unravel_index(index, (feats[0].shape[0], *shape))
    out = []
    for f in feats:
        sizes = f.shape[2:]
        lin = torch.zeros_like(index)
        for c, s_full, s in zip(coords, shape, sizes):
            lin = lin * s + torch.div(c * s, s_full, rounding_mode="floor")
        out.append(f.flatten(2)[b, :, lin])
    return torch.cat(out, dim=1)


class RepresentationHead(nn.Module):
    """Point-wise projection ``sum(C_i) -> embed_dim``: Linear, ReLU, Linear (rows ``N, C`` -> ``N, D``)."""

    def __init__(self, in_features: int, embed_dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_features, embed_dim), nn.ReLU(inplace=True),
                                 nn.Linear(embed_dim, embed_dim))

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return self.mlp(rows)


class Model(nn.Module):
    """Segmentation network and representation head, averaged together by the mean teacher."""

    def __init__(self, cfg: Config, in_channels: int, num_classes: int):
        super().__init__()
        self.net = build_network(cfg, in_channels, num_classes)
        self.head = RepresentationHead(sum(self.net.feature_channels), cfg.embed_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self.net(x)

    def embed(self, feats: list[torch.Tensor], index: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        """Embeddings ``N, D`` of the pixels ``index`` (flat into ``B, *shape``)."""
        return self.head(gather_points(feats, index, shape))
