"""`dataset=Custom`: `_target_` Datasets materialised into tensors once; only the nodes' own targets may name code."""

from __future__ import annotations

import pytest
import torch

from sparselearning.data.custom import check_target_node, load_custom, materialise
from sparselearning.data.registry import load_dataset
from sparselearning.errors import SparseLearningError
from tests.data.custom_target import Pairs, features, pixels

TARGETS = "tests.data.custom_target"


def test_pixel_datasets_are_stacked_as_uint8_images() -> None:
    tensors, info = load_dataset(
        "Custom",
        train={"_target_": f"{TARGETS}.pixels", "size": 40},
        test={"_target_": f"{TARGETS}.pixels", "split": "test", "size": 8},
        val={"_target_": f"{TARGETS}.pixels", "split": "val", "size": 8},
    )
    expected = pixels("train", 40)
    assert torch.equal(tensors["train_images"], torch.stack([expected[i][0] for i in range(40)]))
    assert tensors["train_labels"].tolist() == [int(expected[i][1]) for i in range(40)]
    assert len(tensors["val_labels"]) == 8 and len(tensors["test_labels"]) == 8
    assert (info.name, info.num_classes, info.input_shape, info.input_kind) == ("Custom", 4, (1, 8, 8), "uint8")
    assert info.fingerprint is not None and info.fingerprint.startswith("sha256:")


def test_feature_datasets_without_validation_hold_out_a_tenth() -> None:
    tensors, info = load_custom({"_target_": f"{TARGETS}.features", "size": 30}, {"_target_": f"{TARGETS}.features"})
    assert tensors["train_images"].shape == (27, 1, 1, 12) and tensors["val_images"].shape == (3, 1, 1, 12)
    assert tensors["train_images"].dtype == torch.float32 and info.input_kind == "float"
    assert torch.equal(tensors["val_images"].flatten(1), features("train", 30).tensors[0][27:].float())


def test_the_same_data_has_the_same_fingerprint_and_other_data_another() -> None:
    def digest(size: int) -> str | None:
        node = {"_target_": f"{TARGETS}.features", "size": size}
        return load_custom(node, {"_target_": f"{TARGETS}.features", "split": "test"})[1].fingerprint

    assert digest(30) == digest(30) != digest(31)


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ({"_target_": "???"}, r"dataset.train._target_ must name a callable .* got '\?\?\?'"),
        ({"_target_": "os"}, "must name a callable returning a torch Dataset"),
        ({"_target_": "a.b", "_partial_": True}, "dataset.train._partial_ is refused"),
        ({"_target_": "a.b", "opts": {"_target_": "os.system"}}, "dataset.train.opts._target_ is refused"),
        ({"_target_": "a.b", "opts": [{"_args_": [1]}]}, r"dataset.train.opts\[0\]._args_ is refused"),
        ("a.b", "dataset.train must be a node with a _target_"),
    ],
)
def test_bad_nodes_are_refused(node: object, message: str) -> None:
    with pytest.raises(SparseLearningError, match=message):
        check_target_node(node, "dataset.train")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("not_a_dataset", r"returned a int, not a Dataset with len\(\) and indexing"),
        ("Pairs", "dataset.train item 0 is a Tensor; items must be \\(input, label\\) pairs"),
        ("no_such_function", "cannot build dataset.train._target_=tests.data.custom_target.no_such_function"),
    ],
)
def test_targets_that_give_no_dataset_of_pairs_are_refused(target: str, message: str) -> None:
    with pytest.raises(SparseLearningError, match=message) as caught:
        load_custom({"_target_": f"{TARGETS}.{target}"}, {"_target_": f"{TARGETS}.features"})
    assert "\n" not in str(caught.value)


def test_items_must_share_one_shape_and_have_whole_number_labels() -> None:
    assert isinstance(Pairs(), torch.utils.data.Dataset)
    mixed = [(torch.zeros(3), 0), (torch.zeros(4), 1)]
    with pytest.raises(SparseLearningError, match=r"item 1: the input is torch.float32 \[4\], item 0's"):
        materialise(mixed, "dataset.train")
    with pytest.raises(SparseLearningError, match="item 0: the label is float 0.5; labels must be whole numbers"):
        materialise([(torch.zeros(3), 0.5)], "dataset.train")
    with pytest.raises(SparseLearningError, match="the input is a list; give a tensor or numpy array"):
        materialise([([1.0, 2.0], 0)], "dataset.train")
    with pytest.raises(SparseLearningError, match="returned an empty dataset"):
        materialise([], "dataset.train")
    inputs, labels = materialise([(torch.ones(2), torch.tensor(1)), (torch.zeros(2), 0)], "dataset.train")
    assert inputs.tolist() == [[1.0, 1.0], [0.0, 0.0]] and labels.tolist() == [1, 0]
