"""Tiny settings shared by the pipeline tests (a 2-block ViT at 32 px, 1-epoch pretraining)."""

TINY_VIT = {
    "name": "vit_tiny_patch16_224",
    "model_kwargs": {
        "img_size": 32,
        "patch_size": 8,
        "embed_dim": 32,
        "depth": 2,
        "num_heads": 2,
        "num_classes": 4,
    },
    "image_size": 32,
}
TINY_PRETRAIN = {
    "num_classes": 4,
    "num_images": 48,
    "seed": 0,
    "val_fraction": 0.25,
    "train": {"epochs": 1, "batch_size": 16, "lr": 0.001, "progress": False},
}
ENGINE = {"accelerator": "cpu", "devices": 1, "precision": "32-true"}
