"""Helpers shared by the end-to-end tests (importable as `e2e_kit` from tests/e2e).

The tiny project (synthetic 4-class data, a 2-block 32-wide ViT pretrained for one epoch, two
short training runs) that several e2e tests train through the real `kedro run`; a free port;
a server started in its own process group and stopped with it; the console lines a
successful run must not print.
"""

from __future__ import annotations

import copy
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from tiny import TINY_VIT_SPEC

VENV_BIN = Path(sys.executable).parent

TINY_TRAINING = {
    "training": {
        "checkpoint_root": "data/06_models/checkpoints",
        "hparams": "config",
        "seeds": [0, 1],
        "defaults": {"epochs": 1, "batch_size": 32, "lr": 0.01, "progress": False},
        "runs": {
            "lp": {"method": "linear_probe", "backbone": "vit"},
            "ap": {
                "method": "ap",
                "backbone": "vit",
                "options": {"layer": "blocks.0", "image_size": 32},
                "seeds": [0],
            },
        },
    },
    "training_engine": {"accelerator": "cpu", "devices": 1},
}
TINY_BACKBONE = {
    "backbone": {
        "build": {"vit": "tiny"},
        "models": {
            "tiny": TINY_VIT_SPEC | {"weights": ["pretrain"]},
        },
        "pretrain": {
            "num_classes": 4,
            "num_images": 64,
            "seed": 0,
            "val_fraction": 0.25,
            "train": {"epochs": 1, "batch_size": 32, "progress": False},
        },
    }
}
TINY_DATA = {
    "data_ingestion": {
        "source": "synthetic",
        "sources": {"synthetic": {"num_classes": 4, "num_images": 120}},
    }
}


def tiny_training(runs: Sequence[str] | None = None, **defaults: Any) -> dict[str, Any]:
    """TINY_TRAINING with only `runs` (all by default) and `defaults` changed."""
    training = copy.deepcopy(TINY_TRAINING)
    section = training["training"]
    if runs is not None:
        section["runs"] = {name: section["runs"][name] for name in runs}
    section["defaults"] |= defaults
    return training


def make_tiny(
    project_copy: Any,
    training: Mapping[str, Any] = TINY_TRAINING,
    synthetic: Mapping[str, Any] | None = None,
) -> None:
    """Turn a `project_copy` into the tiny project: `training` is parameters_training.yml,
    `synthetic` changes the synthetic source (e.g. its number of images)."""
    conf = project_copy.path / "conf/base"
    (conf / "parameters_training.yml").write_text(yaml.safe_dump(copy.deepcopy(dict(training))))
    backbone = yaml.safe_load((conf / "parameters_backbone.yml").read_text())["backbone"]
    (conf / "parameters_backbone.yml").write_text(
        yaml.safe_dump({"backbone": backbone | TINY_BACKBONE["backbone"]})
    )
    data = copy.deepcopy(TINY_DATA)
    data["data_ingestion"]["sources"]["synthetic"] |= dict(synthetic or {})
    project_copy.update_yaml("conf/base/parameters_data_ingestion.yml", data)


#: A logged warning or error, a Python warning (`UserWarning: ...`) or a traceback.
_PROBLEM = re.compile(r"\b(WARNING|ERROR)\b|\w*Warning: |Traceback \(most recent call last\)")


def console_problems(*outputs: str) -> list[str]:
    """The lines of a command's output that a successful run should not print."""
    return [line for text in outputs for line in text.splitlines() if _PROBLEM.search(line)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_group(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM to the process's group (its workers too), SIGKILL after `timeout` s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def start_server(
    command: Sequence[str], health_url: str, log: Path, timeout: float = 300, **popen: Any
) -> subprocess.Popen:
    """`command` in its own process group, output to `log`, once `health_url` answers 200.

    A server that exits or does not answer within `timeout` s fails the test with its log.
    """
    with log.open("w") as out:
        process = subprocess.Popen(
            list(command), stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **popen
        )
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            pytest.fail(f"{command[0]} exited:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(health_url, timeout=5) as response:
                if response.status == 200:
                    return process
        except OSError:
            pass
        if time.monotonic() > deadline:
            stop_group(process)
            pytest.fail(f"no answer from {health_url} in {timeout:.0f} s:\n{log.read_text()}")
        time.sleep(1)
