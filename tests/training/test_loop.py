"""fit/predict on tiny real timm backbones: learning, determinism, selection, resume, hooks."""

from __future__ import annotations

import pytest
import torch
from tiny import make_backbone
from training.train_helpers import (
    ColourImages,
    LayerShift,
    metrics,
    preprocess_for,
    probe_model,
    run_config,
)

from visprompt.training import Preprocess, TrainConfig, fit, predict
from visprompt.training.plain import WholeModule

TRAIN, VAL = ColourImages(48, 0), ColourImages(20, 1)


def test_fit_learns_records_history_and_keeps_backbone_frozen() -> None:
    model = probe_model()
    frozen = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    seen: list[int] = []
    result = fit(
        model,
        TRAIN,
        VAL,
        preprocess_for(model),
        run_config(epochs=4),
        on_epoch_end=lambda epoch, row: seen.append(epoch),
    )
    assert seen == [0, 1, 2, 3] and result.epochs_run == 4
    keys = {
        "epoch",
        "train_loss",
        "train_top1",
        "val_loss",
        "val_top1",
        "lr",
        "epoch_time_s",
        "data_wait_s",
        "images_per_s",
    }
    assert keys <= set(result.history[0])
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.best_val_top1 >= 0.7  # 4 classes: chance is 0.25
    # warm-up over the first epoch (3 steps of batch 16): lr of step 0 is a third of the peak
    assert result.history[0]["lr"] == pytest.approx(0.2 / 3)
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, frozen[k]), k
    # the best epoch's weights are in the model: predict reproduces its validation top-1
    logits, labels = predict(model, VAL, preprocess_for(model), batch_size=7)
    assert logits.shape == (20, 4) and torch.equal(labels, VAL.labels)
    top1 = (logits.argmax(1) == labels).float().mean().item()
    assert top1 == pytest.approx(result.best_val_top1)
    assert result.best_val_top1 == max(r["val_top1"] for r in result.history)


def test_same_seed_same_numbers_other_seed_other_numbers() -> None:
    runs = []
    for seed in (3, 3, 4):
        model = probe_model()
        runs.append(
            metrics(
                fit(
                    model,
                    TRAIN,
                    VAL,
                    preprocess_for(model),
                    run_config(epochs=2, seed=seed, augment="flip_crop"),
                ).history
            )
        )
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_early_stopping_on_validation_top1() -> None:
    model = probe_model()
    config = run_config(epochs=6, lr=1e-9, min_lr=0.0, patience=2)  # nothing can improve
    result = fit(model, TRAIN, VAL, preprocess_for(model), config)
    assert result.best_epoch == 0 and result.epochs_run == 3


def test_plain_module_trains_all_parameters() -> None:
    net = make_backbone("resnet")
    net.reset_classifier(4)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    pre = Preprocess(32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    fit(WholeModule(net), TRAIN, None, pre, run_config(epochs=1, optimizer="adam", lr=1e-3))
    changed = {k for k, v in net.state_dict().items() if not torch.equal(v, before[k])}
    trained = {k for k, p in net.named_parameters()}
    assert trained <= changed  # every parameter and the BN running statistics moved
    assert "bn1.running_mean" in changed


def test_resume_after_interruption_matches_uninterrupted(tmp_path) -> None:
    config = run_config(epochs=3, checkpoint_dir=str(tmp_path / "ckpt"))
    reference = LayerShift(make_backbone("resnet"), 4)
    ref = fit(reference, TRAIN, VAL, preprocess_for(reference), run_config(epochs=3))

    class Stop(Exception):
        pass

    def stop_after_first(epoch: int, row: dict) -> None:
        if epoch == 1:
            raise Stop

    first = LayerShift(make_backbone("resnet"), 4)
    with pytest.raises(Stop):
        fit(first, TRAIN, VAL, preprocess_for(first), config, on_epoch_end=stop_after_first)
    resumed = LayerShift(make_backbone("resnet"), 4)
    torch.nn.init.normal_(resumed.suffix.head.weight)  # other init: the state must come back
    result = fit(resumed, TRAIN, VAL, preprocess_for(resumed), config)
    assert resumed.epochs_started == [2]  # only the missing epoch ran
    assert metrics(result.history) == metrics(ref.history)
    assert torch.equal(resumed.delta, reference.delta)
    assert resumed.tau == reference.tau  # extra_state of the best epoch came back
    # a finished run resumes to the same result without training
    again = LayerShift(make_backbone("resnet"), 4)
    assert metrics(fit(again, TRAIN, VAL, preprocess_for(again), config).history) == metrics(
        ref.history
    )
    assert again.epochs_started == []


def test_checkpoint_of_another_run_is_refused(tmp_path) -> None:
    model = probe_model()
    fit(
        model, TRAIN, VAL, preprocess_for(model), run_config(epochs=1, checkpoint_dir=str(tmp_path))
    )
    with pytest.raises(ValueError, match=r"train\.lr"):
        fit(
            model,
            TRAIN,
            VAL,
            preprocess_for(model),
            run_config(epochs=1, lr=0.1, checkpoint_dir=str(tmp_path)),
        )


def test_bad_config_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"TrainConfig\noptimizer\n"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="unknown training option"):
        TrainConfig.from_dict({"epochs": 1, "learning_rate": 0.1})
    with pytest.raises(ValueError, match="divisible"):
        model = probe_model()
        fit(
            model,
            TRAIN,
            VAL,
            preprocess_for(model),
            run_config(batch_size=15, devices=2, strategy="ddp_spawn"),
        )
