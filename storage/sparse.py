"""The two parts of a `sparse` tensor record: a pruned tensor's mask (one bit per entry, `np.packbits`
order) and its kept values. Lossless: an entry is kept iff its bits are non-zero, so -0.0 survives too.
The `Sparse` codec in storage/codecs.py frames them (bits as-is, values byte-shuffled).
"""

from __future__ import annotations

import numpy as np
import torch

from storage.errors import SnapshotError

_SAME_SIZE_INT = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def split(t: torch.Tensor) -> tuple[bytes, torch.Tensor]:
    """(packed mask bits, kept values in flat order) of a floating-point tensor."""
    flat = t.detach().cpu().contiguous().reshape(-1)
    keep = flat.view(_SAME_SIZE_INT[flat.element_size()]) != 0
    return np.packbits(keep.numpy()).tobytes(), flat[keep].contiguous()


def kept_count(bits: bytes, numel: int, where: str) -> int:
    """How many entries the mask keeps, after checking it fits `numel` exactly."""
    if len(bits) != (numel + 7) // 8:
        raise SnapshotError(f"{where}: sparse mask has {len(bits)} bytes, the shape needs {(numel + 7) // 8}")
    packed = np.frombuffer(bits, np.uint8)
    if numel % 8 and packed[-1] & ((1 << (8 - numel % 8)) - 1):
        raise SnapshotError(f"{where}: sparse mask has bits set past the end of the tensor")
    return int(np.unpackbits(packed).sum())


def join(bits: bytes, values: torch.Tensor, shape: list[int]) -> torch.Tensor:
    """The dense tensor: `values` written where the mask (checked by `kept_count`) is set, zero elsewhere."""
    numel = int(np.prod(shape, dtype=np.int64))
    keep = torch.from_numpy(np.unpackbits(np.frombuffer(bits, np.uint8), count=numel).astype(bool))
    out = torch.zeros(numel, dtype=values.dtype)
    out[keep] = values
    return out.reshape(shape)
