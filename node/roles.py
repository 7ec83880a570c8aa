"""`--role auto`: the role this machine's resources call for (Learnae: roles by data and compute).

A node with data trains (a research data set on this machine, or a non-empty `--image-folder`); one
without data but with disk to spare keeps the swarm's snapshots available (pinner); any other only
follows the swarm (observer). An explicit `--role` is taken as it is.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from node.config import NodeConfig
from swarm.data import available

GB = 1024**3
# A pinner keeps the newest snapshots of every peer pinned: a few hundred models of up to 45 MB
# (resnet18, fp32) fit in 2 GB.
PINNER_MIN_FREE_BYTES = 2 * GB


@dataclass(frozen=True)
class RoleChoice:
    role: str
    why: str


def free_bytes(path: Path) -> int:
    """Free disk space where `path` is, or would be created (its nearest existing parent)."""
    for candidate in [path, *path.absolute().parents]:
        if candidate.exists():
            return shutil.disk_usage(candidate).free
    return 0


def has_files(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_file() for p in folder.rglob("*"))


def pick_role(cfg: NodeConfig, free: Callable[[Path], int] = free_bytes) -> RoleChoice:
    if cfg.role != "auto":
        return RoleChoice(cfg.role, "set by --role")
    if cfg.image_folder:
        folder = Path(cfg.image_folder)
        if has_files(folder):
            return RoleChoice("trainer", f"--image-folder {folder} holds images")
        no_data = f"--image-folder {folder} is empty or missing"
    elif available(cfg.dataset):
        return RoleChoice("trainer", f"data set {cfg.dataset} is on this machine (shard {cfg.client} of "
                                     f"{cfg.clients})")
    else:
        no_data = f"data set {cfg.dataset} is not on this machine"
    spare = free(cfg.data_dir)
    if spare >= PINNER_MIN_FREE_BYTES:
        return RoleChoice("pinner", f"no data ({no_data}); {spare / GB:.1f} GB free in {cfg.data_dir}")
    return RoleChoice("observer", f"no data ({no_data}); {spare / GB:.1f} GB free in {cfg.data_dir}, a "
                                  f"pinner wants {PINNER_MIN_FREE_BYTES / GB:.0f} GB")
