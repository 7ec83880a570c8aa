"""Class labels by name: which model output means which class.

Output k of a model must mean the same class on every peer of a swarm, or each merge mixes classes
up. torchvision's ImageFolder numbers class folders alphabetically, a research data set numbers its
classes in its own order, a swarm manifest fixes one order: labels are therefore matched by *name*.
Names match ignoring case and everything but letters and digits, so the folder `T-shirt_top` is the
class `T-shirt/top` (a folder name cannot hold a `/`) and `ankle boot` is `Ankle boot`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from swarm.errors import SwarmError


class UnknownClassError(SwarmError, ValueError):
    """A class name (an image folder, a data set's class) is not one of the swarm's classes."""


def class_key(name: str) -> str:
    """What two class names must share to be the same class."""
    return "".join(ch for ch in name.casefold() if ch.isalnum())


@dataclass(frozen=True)
class ClassOrder:
    """Where each source name (a folder, a data set's class) goes in the order models use."""

    classes: tuple[str, ...]  # output k of the model is classes[k]
    index: tuple[int, ...]  # source name i is class index[i]
    note: str = ""  # what the user should know about it (missing classes, an order nobody agreed on)


def map_names(names: Sequence[str], classes: Sequence[str], what: str) -> ClassOrder:
    """Each of `names` to its position in `classes`, by name; an unknown name is an error listing the
    expected ones. Classes no name maps to are fine (this peer has no examples of them): a note."""
    positions: dict[str, int] = {}
    for i, name in enumerate(classes):
        key = class_key(name)
        if not key or key in positions:
            raise UnknownClassError(f"the swarm's class {name!r} cannot be told apart from "
                                    f"{classes[positions[key]]!r} by name" if key else
                                    f"the swarm's class {name!r} has no letter or digit to match by")
        positions[key] = i
    unknown = [n for n in names if class_key(n) not in positions]
    if unknown:
        raise UnknownClassError(
            f"{what} {', '.join(map(repr, unknown))} {'is' if len(unknown) == 1 else 'are'} not among the "
            f"swarm's classes; expected names: {', '.join(map(repr, classes))} (case, spaces and "
            "punctuation do not matter, so 'T-shirt/top' may be a folder T-shirt_top)")
    index = tuple(positions[class_key(n)] for n in names)
    missing = [c for i, c in enumerate(classes) if i not in set(index)]
    note = f"no examples of {', '.join(map(repr, missing))}: fine, the swarm's other peers have them" \
        if missing else ""
    return ClassOrder(tuple(classes), index, note)


def order_folders(folders: Sequence[str], swarm_classes: Sequence[str] | None,
                  known: Mapping[str, Sequence[str]]) -> ClassOrder:
    """The classes of an image folder's class folders: the swarm's (its manifest) when there is one;
    else those of the known data set whose class names include every folder name (so a folder of
    Fashion-MNIST classes merges with Fashion-MNIST shards); else the folder names alphabetically,
    with a warning that every peer must then have exactly these folders."""
    if swarm_classes is not None:
        return map_names(folders, swarm_classes, "class folder")
    for dataset, classes in known.items():
        keys = {class_key(c) for c in classes}
        if all(class_key(f) in keys for f in folders):
            order = map_names(folders, classes, "class folder")
            note = f"class folders are {dataset} classes: labels follow {dataset}'s order"
            return ClassOrder(order.classes, order.index, f"{note}; {order.note}" if order.note else note)
    alphabetical = tuple(sorted(folders))
    return ClassOrder(alphabetical, tuple(alphabetical.index(f) for f in folders),
                      "WARNING: the class folders match no known data set and no --manifest is given: "
                      "labels follow the alphabetical order of the folder names "
                      f"({', '.join(alphabetical)}); "
                      "every peer of the swarm must have exactly these folders, or merges mix classes "
                      "up. A swarm manifest (swarm-node manifest create) fixes the classes for everyone")
