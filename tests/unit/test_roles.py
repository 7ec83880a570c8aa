"""`--role auto` (the default): trainer with data, pinner with disk to spare, observer otherwise; and
`--device auto`: the first of cuda > mps > cpu found."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.config import NodeConfig
from node.roles import PINNER_MIN_FREE_BYTES, free_bytes, pick_role
from swarm.models import found_devices, pick_device


def plenty(_path: Path) -> int:
    return PINNER_MIN_FREE_BYTES


def little(_path: Path) -> int:
    return PINNER_MIN_FREE_BYTES - 1


@pytest.fixture
def no_cifar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> NodeConfig:
    """A node asked for a research data set this machine does not hold."""
    monkeypatch.setenv("SWARM_DATA_DIR", str(tmp_path / "nothing-here"))
    return NodeConfig(dataset="cifar10", data_dir=tmp_path / "data")


def test_auto_is_the_default_and_trains_on_a_data_set_this_machine_holds() -> None:
    choice = pick_role(NodeConfig(dataset="digits"), free=little)
    assert NodeConfig().role == "auto"
    assert choice.role == "trainer" and "digits is on this machine" in choice.why


def test_auto_trains_on_a_non_empty_image_folder(tmp_path: Path) -> None:
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "1.png").write_bytes(b"\x89PNG")
    choice = pick_role(NodeConfig(image_folder=str(tmp_path)), free=little)
    assert choice.role == "trainer" and "holds images" in choice.why


def test_auto_pins_without_data_but_with_disk(tmp_path: Path) -> None:
    (tmp_path / "cats").mkdir()  # class folders without an image are no data
    choice = pick_role(NodeConfig(image_folder=str(tmp_path)), free=plenty)
    assert choice.role == "pinner" and "is empty or missing" in choice.why and "2.0 GB free" in choice.why


def test_auto_observes_without_data_or_disk(no_cifar: NodeConfig) -> None:
    choice = pick_role(no_cifar, free=little)
    assert choice.role == "observer"
    assert "cifar10 is not on this machine" in choice.why and "a pinner wants 2 GB" in choice.why
    assert pick_role(no_cifar, free=plenty).role == "pinner"


@pytest.mark.parametrize("role", ["trainer", "pinner", "observer"])
def test_an_explicit_role_is_taken_as_it_is(no_cifar: NodeConfig, role: str) -> None:
    cfg = NodeConfig(dataset="cifar10", role=role, data_dir=no_cifar.data_dir)
    assert pick_role(cfg, free=little).role == role


def test_free_bytes_of_a_data_dir_not_created_yet_is_its_parents(tmp_path: Path) -> None:
    assert free_bytes(tmp_path / "a" / "b") == free_bytes(tmp_path) > 0


def test_device_auto_picks_the_first_device_found() -> None:
    found = found_devices()
    assert found[-1] == "cpu"
    assert found[0].startswith(str(pick_device("auto")))
