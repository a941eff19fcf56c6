"""The loop's parts without a model: config, schedule, augmentation, checkpoint files."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from lightning.fabric import Fabric
from tiny import make_backbone

from visprompt import methods
from visprompt.training import Preprocess, TrainConfig, checkpoint
from visprompt.training.augment import flip_crop
from visprompt.training.batchnorm import CpuSyncBatchNorm, sync_trained_batchnorm
from visprompt.training.plain import WholeModule
from visprompt.training.schedule import lr_factor, warmup_cosine


def test_warmup_then_cosine_to_the_floor() -> None:
    kw = dict(total_steps=10, warmup_steps=4, floor=0.1)
    factors = [lr_factor(step, **kw) for step in range(10)]
    assert factors[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert factors[4] == pytest.approx(1.0)
    assert all(a > b for a, b in zip(factors[4:], factors[5:], strict=False))
    assert lr_factor(10, **kw) == pytest.approx(0.1)  # the end of the last step: the floor
    # midway through the decay: halfway between peak and floor
    assert lr_factor(7, **kw) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))


def test_schedule_keeps_per_group_lr_ratios() -> None:
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [a], "lr": 1.0}, {"params": [b], "lr": 40.0}], lr=1.0)
    sched = warmup_cosine(opt, steps_per_epoch=5, epochs=2, warmup_epochs=1, min_lr=0.0)
    for _ in range(7):
        opt.step()
        sched.step()
        assert opt.param_groups[1]["lr"] == pytest.approx(40 * opt.param_groups[0]["lr"])


def test_every_group_decays_to_min_lr_itself() -> None:
    """The floor is min_lr for each group, not min_lr/lr times the group's own lr."""
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [a], "lr": 1.0}, {"params": [b], "lr": 0.05}], lr=1.0)
    sched = warmup_cosine(opt, steps_per_epoch=5, epochs=2, warmup_epochs=0, min_lr=0.01)
    for _ in range(10):
        opt.step()
        sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.01, 0.01])


def test_flip_crop_is_a_shifted_or_flipped_crop_of_the_padded_image() -> None:
    images = torch.randn(6, 3, 8, 8)
    out = flip_crop(images, torch.Generator().manual_seed(0))
    again = flip_crop(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and torch.equal(out, again)
    padded = F.pad(images, (1, 1, 1, 1))
    flipped = 0
    for i in range(6):
        crops = {
            (oy, ox, flip): (
                padded[i, :, oy : oy + 8, ox : ox + 8].flip(-1)
                if flip
                else padded[i, :, oy : oy + 8, ox : ox + 8]
            )
            for oy in range(3)
            for ox in range(3)
            for flip in (False, True)
        }
        match = [k for k, crop in crops.items() if torch.equal(crop, out[i])]
        assert match, f"image {i} is not a crop of its padded input"
        flipped += match[0][2]
    assert 0 < flipped < 6  # both flipped and unflipped images in a batch of 6 (seed 0)


def test_config_and_preprocess_validation() -> None:
    base = TrainConfig(epochs=2, lr=0.1)
    assert base.result_fields() == TrainConfig(epochs=2, lr=0.1, num_workers=4).result_fields()
    assert base.result_fields() != TrainConfig(epochs=2, lr=0.2).result_fields()
    with pytest.raises(ValueError, match=r"TrainConfig\nwarmup_epochs\n"):
        TrainConfig(epochs=2, warmup_epochs=3)
    with pytest.raises(ValueError, match=r"TrainConfig\naugment\n"):
        TrainConfig(augment="mixup")
    pre = Preprocess.from_data_config(
        {"input_size": (3, 16, 16), "mean": [0.5] * 3, "std": [0.5] * 3}
    )
    x = pre(torch.full((2, 3, 32, 32), 255, dtype=torch.uint8))
    assert x.shape == (2, 3, 16, 16) and torch.allclose(x, torch.ones_like(x))
    with pytest.raises(KeyError, match="input_size"):
        Preprocess.from_data_config({"mean": [0.5], "std": [0.5]})


def test_checkpoint_is_atomic_resumes_and_refuses_another_run(tmp_path, monkeypatch) -> None:
    fabric = Fabric(accelerator="cpu", devices=1, plugins=[checkpoint.AtomicCheckpointIO()])
    sig = {"train": {"lr": 0.1}, "data": {"train": 10}}

    def run(seed: int, signature: dict = sig) -> checkpoint.RunCheckpoint:
        torch.manual_seed(seed)
        net = WholeModule(torch.nn.Linear(2, 1))
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5**step)
        return checkpoint.RunCheckpoint(fabric, str(tmp_path), signature, net, opt, sched)

    first = run(0)
    assert first.resume().history == []
    first.model(torch.ones(3, 2)).sum().backward()
    first.optimizer.step(), first.scheduler.step()
    row = {"epoch": 0, "epoch_time_s": 1.0, "val_top1": 0.5}
    progress = checkpoint.Progress()
    progress.record(row, first.model, improved=False)
    first.save(progress)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temporary left
    saved = (tmp_path / "last.ckpt").read_bytes()

    def killed_mid_write(obj, path) -> None:
        Path(path).write_bytes(saved[:10])
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(torch, "save", killed_mid_write)
        with pytest.raises(KeyboardInterrupt):
            first.save(progress)
    assert (tmp_path / "last.ckpt").read_bytes() == saved  # the torn write never replaced it

    other = run(1)
    restored = other.resume()
    assert restored.history == [row] and restored.best_epoch == 0
    weight = first.model.module.weight
    assert torch.equal(other.model.module.weight, weight)
    momentum = other.optimizer.state_dict()["state"][0]["momentum_buffer"]
    assert torch.equal(momentum, first.optimizer.state[weight]["momentum_buffer"])
    assert other.scheduler.last_epoch == 1 and other.optimizer.param_groups[0]["lr"] == 0.05
    with pytest.raises(ValueError, match=r"train\.lr \(0\.1 -> 0\.2\)"):
        run(0, {"train": {"lr": 0.2}, "data": {"train": 10}}).resume()


def test_multi_process_runs_sync_only_the_batchnorm_that_trains() -> None:
    gpu = torch.device("cuda")  # the choice of layers does not depend on the device
    bn = torch.nn.modules.batchnorm._BatchNorm
    full = methods.build("full_finetune", make_backbone("resnet"), 4)
    count = sum(isinstance(m, bn) for m in full.backbone.modules())
    assert len(sync_trained_batchnorm(full, gpu)) == count > 0
    assert all(
        type(m) is torch.nn.SyncBatchNorm for m in full.backbone.modules() if isinstance(m, bn)
    )
    probe = methods.build("linear_probe", make_backbone("resnet"), 4)
    assert sync_trained_batchnorm(probe, gpu) == []  # frozen BN stays as it is, in eval
    pgn = methods.build("pgn", make_backbone("vit"), 4, num_prompts=4, library_size=8)
    synced = sync_trained_batchnorm(pgn, gpu)
    assert synced and all(name.startswith("generator.") for name in synced)
    on_cpu = methods.build("full_finetune", make_backbone("resnet"), 4)
    assert len(sync_trained_batchnorm(on_cpu, torch.device("cpu"))) == count
    assert all(type(m) is CpuSyncBatchNorm for m in on_cpu.backbone.modules() if isinstance(m, bn))


def test_cpu_sync_batchnorm_computes_what_batchnorm_computes(tmp_path: Path) -> None:
    """In a (1-process) gloo group: outputs, gradients and running statistics of two train
    steps, then eval, equal nn.BatchNorm2d's (momentum and cumulative average). Across 2
    processes, test_processes compares whole trainings against 1 process."""
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        for momentum in (0.1, None):
            torch.manual_seed(0)
            ref = torch.nn.BatchNorm2d(3, momentum=momentum)
            with torch.no_grad():
                ref.weight.uniform_(0.5, 1.5), ref.bias.uniform_(-1, 1)
            synced = CpuSyncBatchNorm.convert(copy.deepcopy(ref))
            for _ in range(2):
                x, g = torch.randn(6, 3, 4, 5) * 3 + 2, torch.randn(6, 3, 4, 5)
                xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
                ya, yb = ref(xa), synced(xb)
                (ya * g).sum().backward(), (yb * g).sum().backward()
                torch.testing.assert_close(yb, ya)
                torch.testing.assert_close(xb.grad, xa.grad)
            for name in ("weight", "bias"):
                torch.testing.assert_close(getattr(synced, name).grad, getattr(ref, name).grad)
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                torch.testing.assert_close(getattr(synced, name), getattr(ref, name))
            assert not torch.equal(ref.running_var, torch.ones(3))  # the statistics moved
            synced.eval(), ref.eval()
            torch.testing.assert_close(synced(x), ref(x))
    finally:
        dist.destroy_process_group()
