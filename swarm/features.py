"""Fixed input features a model can ask for instead of raw images.

A model class that sets `input_features = NAME` is trained, scored and tested on `FEATURES[NAME]` of
the images, computed once per data set by `client_inputs` (the simulator for every client, the node
for its shard) rather than in every forward pass. These features have no weights and look at nothing
but the image itself, so computing them costs no privacy budget and they never travel in a snapshot:
peers exchange only the small model trained on top.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import cache

import torch
from torch import nn
from torch.nn import functional as F

from swarm.errors import SwarmError
from swarm.partition import ClientData

SCATTER_SIDE = 28  # the image side the scatter features (and so the scatter-linear model) are built for
SCATTER_OUT_SIDE = SCATTER_SIDE // 4  # each map's side: the scattering's 2 octaves (J = 2) subsample by 4
SCATTER_MAPS = 81  # maps per input channel at J = 2, L = 8: 1 + J L + L^2 J (J - 1) / 2
SCATTER_GROUPS = 27  # Tramer and Boneh's GroupNorm groups over those 81 maps
CHUNK = 1000  # images per scattering call: bounds the memory of the 4-D wavelet convolutions


class FeatureInputError(SwarmError, ValueError):
    """The images do not fit the fixed features a model asks for."""


@cache
def scattering() -> nn.Module:
    # kymatio's public `kymatio.torch` also loads its 3-D frontend, which imports scipy.special.sph_harm
    # (removed in SciPy 1.17); the 2-D frontend alone does not need it.
    from kymatio.scattering2d.frontend.torch_frontend import ScatteringTorch2D

    return ScatteringTorch2D(J=2, shape=(SCATTER_SIDE, SCATTER_SIDE), L=8)


def scatter(images: torch.Tensor) -> torch.Tensor:
    """ScatterNet features (Oyallon and Mallat; Tramer and Boneh, ICLR 2021, who found a linear model on
    them the best DP-SGD learner for Fashion-MNIST): a 2-layer scattering transform (J = 2, 8 angles) of
    images in [-1, 1], 81 maps of 7x7 per channel, each group of 3 maps normalised per image
    (GroupNorm without weights: it uses no statistics of other images, so no privacy is spent on it).
    `[n, C, 28, 28]` -> `[n, 81 C, 7, 7]`."""
    if images.dim() != 4 or tuple(images.shape[-2:]) != (SCATTER_SIDE, SCATTER_SIDE):
        side = f"{SCATTER_SIDE}x{SCATTER_SIDE}"
        raise FeatureInputError(f"the scatter features (model scatter-linear) take {side} images, got shape "
                                f"{tuple(images.shape)}; pick a model for this data's size (digits-mlp for "
                                "8x8, lenet for 32x32)")
    n, channels = images.shape[:2]
    if n == 0:  # an empty split (no validation images): nothing for the scattering to take
        return images.new_zeros(0, SCATTER_MAPS * channels, SCATTER_OUT_SIDE, SCATTER_OUT_SIDE)
    out = []
    with torch.no_grad():
        for start in range(0, n, CHUNK):
            chunk = (images[start:start + CHUNK].float() + 1) / 2  # back to [0, 1], the scale it was made for
            out.append(scattering()(chunk).flatten(1, 2))
    return F.group_norm(torch.cat(out), SCATTER_GROUPS * channels)


FEATURES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"scatter": scatter}


def client_inputs(model: nn.Module, clients: list[ClientData]) -> list[ClientData]:
    """The clients' data as `model` takes it: unchanged, or every split mapped through the model's
    `input_features` (a split several clients share, as the rotation's test sets, is mapped once)."""
    name = getattr(model, "input_features", None)
    if name is None:
        return clients
    features = FEATURES[name]
    done: dict[int, torch.Tensor] = {}

    def mapped(x: torch.Tensor) -> torch.Tensor:
        if id(x) not in done:
            done[id(x)] = features(x)
        return done[id(x)]

    return [replace(c, train_x=mapped(c.train_x), val_x=mapped(c.val_x), test_x=mapped(c.test_x))
            for c in clients]
