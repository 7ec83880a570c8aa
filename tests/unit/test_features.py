"""Fixed input features (ScatterNet) and the linear model DP-SGD trains on them, on real Fashion-MNIST."""

from __future__ import annotations

import pytest
import torch

from node.config import NodeConfig
from node.learner import Learner, load_shard
from swarm.data import fashion_mnist
from swarm.features import FeatureInputError, client_inputs, scatter
from swarm.models import build_model
from swarm.partition import ClientData
from swarm.privacy import check_dp_model
from swarm.sim.config import SimConfig
from swarm.sim.simulator import simulate

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return fashion_mnist().test_x[:6]


def test_scatter_gives_81_maps_per_channel_normalised_per_image_in_groups_of_3(images: torch.Tensor) -> None:
    grey = scatter(images)
    assert grey.shape == (6, 81, 7, 7)
    groups = grey.reshape(6, 27, -1)
    assert torch.allclose(groups.mean(-1), torch.zeros(6, 27), atol=1e-4)
    # unit variance but for GroupNorm's eps (1e-5), which damps the faint second-order maps
    assert (groups.var(-1, unbiased=False) <= 1.0 + 1e-4).all()
    assert groups[:, 0].var(-1, unbiased=False).min() > 0.99  # the first group holds the bright maps
    colour = scatter(images.repeat(1, 3, 1, 1))
    assert colour.shape == (6, 243, 7, 7)


def test_an_images_features_do_not_depend_on_the_other_images(images: torch.Tensor) -> None:
    # why computing them costs no privacy: nothing of another sample enters them
    alone = torch.cat([scatter(images[i:i + 1]) for i in range(len(images))])
    assert torch.allclose(alone, scatter(images), atol=1e-5)
    assert not torch.allclose(scatter(images[:1]), scatter(images[1:2]))


def test_other_image_sizes_are_refused_with_a_model_to_pick() -> None:
    with pytest.raises(FeatureInputError, match="digits-mlp for 8x8"):
        scatter(torch.zeros(2, 1, 8, 8))


def test_the_scatter_model_publishes_only_its_linear_weights_and_dp_sgd_can_train_it() -> None:
    model = build_model("scatter-linear")
    check_dp_model(model)
    assert {k: v.numel() for k, v in model.state_dict().items()} == {"fc.weight": 39_690, "fc.bias": 10}
    assert build_model("scatter-linear", in_channels=3).fc.in_features == 3 * 81 * 49


def test_client_inputs_map_every_split_once_and_leave_other_models_alone(images: torch.Tensor) -> None:
    labels = torch.zeros(len(images), dtype=torch.long)
    shared_test = images[4:]
    clients = [ClientData(images[:2], labels[:2], images[2:3], labels[2:3], shared_test, labels[4:], 0),
               ClientData(images[2:4], labels[2:4], images[3:4], labels[3:4], shared_test, labels[4:], 1)]
    assert client_inputs(build_model("dp-cnn"), clients) is clients
    mapped = client_inputs(build_model("scatter-linear"), clients)
    assert [c.train_x.shape for c in mapped] == [(2, 81, 7, 7)] * 2
    assert torch.equal(mapped[1].val_x, scatter(images[3:4]))
    assert mapped[0].test_x is mapped[1].test_x  # the rotation's shared test sets are mapped once
    assert mapped[0].train_y is clients[0].train_y  # labels pass through


def test_the_simulator_trains_the_linear_model_on_scatter_features() -> None:
    result = simulate(SimConfig(dataset="fashion-mnist", partition="iid", clients=2, train_samples=300,
                                val_samples=0, test_samples=200, rounds=2, strategy="fedavg",
                                model="scatter-linear", optimizer="sgd", lr=0.2, batch_size=32, seed=0))
    assert result.config["model"] == "scatter-linear"
    assert min(result.per_client) > 0.6  # chance is 0.1


def test_a_node_trains_and_tests_the_scatter_model_on_its_shard() -> None:
    cfg = NodeConfig(dataset="fashion-mnist", partition="iid", clients=2, client=0, samples_per_client=300,
                     rounds=2, model="scatter-linear", optimizer="sgd", lr=0.2)
    learner = Learner(cfg, load_shard(cfg), torch.device("cpu"))
    before = learner.evaluate("test")
    learner.train(None)
    learner.train(None)
    assert learner.data.train_x.shape[1:] == (81, 7, 7)
    assert learner.shard.in_channels == 1  # the user's shard keeps its images
    assert learner.evaluate("test")[1] > max(0.5, before[1])  # chance is 0.1
