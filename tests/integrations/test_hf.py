"""The Hugging Face Trainer callback masks every attention and feed-forward weight of a BERT encoder, leaves
masked weights exactly zero, and resumes from a Trainer checkpoint to the masks of the uninterrupted run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from sparselearning import methods
from sparselearning.errors import SparseLearningError
from sparselearning.integrations.hf import MASKING_FILE, SparseTrainingCallback

LAYERS = 2
ENCODER_WEIGHTS = re.compile(
    r"bert\.encoder\.layer\.\d+\.(attention\.self\.(query|key|value)|attention\.output\.dense|intermediate\.dense"
    r"|output\.dense)\.weight"
)


class Sentences(Dataset):
    """Random token sequences with a label that depends on their first token (so there is something to learn)."""

    def __init__(self, count: int = 64, length: int = 12) -> None:
        generator = torch.Generator().manual_seed(0)
        self.ids = torch.randint(1, 64, (count, length), generator=generator)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        ids = self.ids[index]
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": (ids[0] % 2).long()}


def tiny_bert() -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=LAYERS,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=16,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=2,
    )
    return BertForSequenceClassification(config)


def fit(folder: Path, callback: SparseTrainingCallback, resume: str | None = None, **settings: object) -> Trainer:
    model = tiny_bert()
    defaults: dict[str, object] = {"max_steps": 20, "save_strategy": "steps", "save_steps": 10}
    arguments = TrainingArguments(
        output_dir=str(folder),
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        use_cpu=True,
        report_to="none",
        logging_steps=5,
        seed=0,
        disable_tqdm=True,
        **{**defaults, **settings},
    )
    trainer = Trainer(model=model, args=arguments, train_dataset=Sentences(), callbacks=[callback])
    trainer.train(resume_from_checkpoint=resume)
    return trainer


def test_every_encoder_attention_and_feed_forward_weight_is_masked_and_exactly_zero(tmp_path: Path) -> None:
    callback = SparseTrainingCallback("RigL", density=0.1, exclude=["bert.embeddings"])
    model = fit(tmp_path, callback).model
    masked = set(callback.masking.mask_dict)
    encoder = {name for name, _ in model.named_parameters() if ENCODER_WEIGHTS.fullmatch(name)}
    assert len(encoder) == 6 * LAYERS
    assert encoder <= masked
    assert callback.masking.total_steps == 20 and callback.masking.mask_step == 20
    for name, record in callback.masking.records.items():
        assert int((record.parameter[~record.mask] != 0).sum()) == 0, name
    assert callback.masking.stats.total_density == pytest.approx(0.1, abs=1e-3)
    assert (tmp_path / "checkpoint-10" / MASKING_FILE).is_file()


def test_metrics_reach_the_trainer_log_history(tmp_path: Path) -> None:
    callback = SparseTrainingCallback("SET", density=0.2, update_frequency=5, exclude=["bert.embeddings"])
    trainer = fit(tmp_path, callback, save_strategy="no")
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 4
    for entry in logged:
        assert entry["sparsity/density"] == pytest.approx(0.2, abs=1e-3)
        assert entry["sparsity/density"] <= entry["sparsity/itop_rate"] <= 1.0
        assert 0.0 < entry["sparsity/inference_flops"] < 1.0
    assert logged[-1]["sparsity/itop_rate"] > logged[0]["sparsity/itop_rate"], "SET explores new weights"
    assert [entry["sparsity/mask_step"] for entry in logged] == [5, 10, 15, 20]


def test_a_run_resumed_from_a_trainer_checkpoint_ends_with_the_masks_of_the_straight_run(tmp_path: Path) -> None:
    straight = SparseTrainingCallback("RigL", density=0.1, update_frequency=5, exclude=["bert.embeddings"])
    fit(tmp_path / "straight", straight)
    model = tiny_bert()
    initial = methods.rigl(
        model, torch.optim.AdamW(model.parameters()), density=0.1, total_steps=20, exclude=["bert.embeddings"]
    )
    changed = sum(int((straight.masking.mask_dict[n] != m).sum()) for n, m in initial.mask_dict.items())
    assert changed > 0, "updates moved the masks"

    resumed = SparseTrainingCallback("RigL", density=0.1, update_frequency=5, exclude=["bert.embeddings"])
    fit(tmp_path / "straight", resumed, resume=str(tmp_path / "straight" / "checkpoint-10"))
    assert resumed.masking.mask_step == 20
    for name, mask in straight.masking.mask_dict.items():
        assert torch.equal(resumed.masking.mask_dict[name], mask), name


def test_resuming_without_the_saved_masks_is_refused_in_one_line(tmp_path: Path) -> None:
    fit(
        tmp_path / "first", SparseTrainingCallback("RigL", density=0.1, update_frequency=5, exclude=["bert.embeddings"])
    )
    with pytest.raises(SparseLearningError, match="pass SparseTrainingCallback\\(resume_from="):
        fit(
            tmp_path / "elsewhere",
            SparseTrainingCallback("RigL", density=0.1, update_frequency=5, exclude=["bert.embeddings"]),
            resume=str(tmp_path / "first" / "checkpoint-10"),
        )
    resumed = SparseTrainingCallback(
        "RigL",
        density=0.1,
        update_frequency=5,
        exclude=["bert.embeddings"],
        resume_from=tmp_path / "first" / "checkpoint-10",
    )
    fit(tmp_path / "elsewhere", resumed, resume=str(tmp_path / "first" / "checkpoint-10"))
    assert resumed.masking.mask_step == 20


def test_gradient_accumulation_advances_the_masks_once_per_optimizer_step(tmp_path: Path) -> None:
    callback = SparseTrainingCallback("RigL", density=0.1, update_frequency=5, exclude=["bert.embeddings"])
    fit(tmp_path, callback, max_steps=6, gradient_accumulation_steps=3, save_strategy="no")
    assert callback.masking.mask_step == 6 and callback.masking.total_steps == 6
