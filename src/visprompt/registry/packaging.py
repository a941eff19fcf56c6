"""A trained run as a registry candidate: which seed is registered, what package.json holds,
which validation images verify the version, its lineage."""

from __future__ import annotations

import dataclasses
import math
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from visprompt.evaluation.statistics import seed_interval
from visprompt.registry.promotion import SmokeSet
from visprompt.registry.serving import ServingLimits
from visprompt.training import Preprocess

#: How a registered PGN serves: `rgb` = prompt inversion in front of the unmodified ViT.
PGN_SERVING = ("rgb", "token")


def git_commit(root: str | Path = ".") -> str:
    """HEAD's commit, with `-dirty` when tracked files changed; `unknown` outside git."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    try:
        commit, dirty = git("rev-parse", "HEAD"), git("status", "--porcelain", "-uno")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def build_package(
    backbone_spec: dict[str, Any],
    class_names: list[str],
    stored_size: int,
    serving: dict[str, Any] | None = None,
    pgn_serving: str = "rgb",
) -> dict[str, Any]:
    """package.json of a version: classes, preprocessing (with `stored_size`, the shards'
    side that serving converts a request to), serving limits, backbone spec, PGN serving."""
    if pgn_serving not in PGN_SERVING:
        raise ValueError(
            f"parameters_registry.yml: registry.pgn_serving must be one of {list(PGN_SERVING)}, "
            f"got {pgn_serving!r}"
        )
    preprocess = Preprocess.from_data_config(backbone_spec["data_config"])
    spec = {
        k: backbone_spec[k]
        for k in ("name", "model_kwargs", "weights_path", "sha256", "source")
        if k in backbone_spec
    }
    return {
        "class_names": class_names,
        "preprocessing": dataclasses.asdict(preprocess) | {"stored_size": int(stored_size)},
        "backbone": spec,
        "serving": dataclasses.asdict(ServingLimits(**(serving or {}))),
        "pgn_serving": pgn_serving,
    }


def smoke_set(
    images: np.ndarray, labels: np.ndarray, accuracy: float, settings: dict[str, Any]
) -> SmokeSet:
    """The validation split (a seeded subset above `max_images`) and the run's val accuracy.

    On a subset the recorded full-split accuracy is only an estimate: the tolerance widens to
    three binomial standard errors, still far below what corrupted weights lose.
    """
    cap = int(settings.get("max_images") or len(labels))
    tolerance = float(settings.get("tolerance", 0.01))
    if len(labels) > cap:
        chosen = np.sort(np.random.default_rng(0).choice(len(labels), cap, replace=False))
        images, labels = images[chosen], labels[chosen]
        p = min(max(accuracy, 0.0), 1.0)
        tolerance = max(tolerance, 3 * math.sqrt(p * (1 - p) / cap))
    return SmokeSet(images, labels, float(accuracy), tolerance)


def select_candidate(
    run: str, summaries: Mapping[int, Mapping[str, Any]], metric_name: str
) -> tuple[int, float]:
    """(seed, mean): the seed whose validation `metric_name` is closest to the mean over
    seeds (ties: the lowest), so the registered artifact represents the mean promotion
    compares, not the luckiest seed."""
    if not summaries:
        raise ValueError(f"run '{run}' has no trained seed to register")
    values = {}
    for seed, summary in summaries.items():
        if metric_name not in summary:
            raise ValueError(
                f"{run}.seed_{seed}.train_summary has no '{metric_name}' (keys: "
                f"{sorted(summary)}); set registry.metric in parameters_registry.yml to one of them"
            )
        values[int(seed)] = float(summary[metric_name])
    mean = sum(values.values()) / len(values)
    seed = min(values, key=lambda s: (abs(values[s] - mean), s))
    return seed, mean


def describe(
    run: str,
    summary: Mapping[str, Any],
    data_hash: str,
    test_top1: list[float],
) -> str:
    """The version's description (what MLflow's UI and `registry status` show first): run,
    method, backbone, data, test top-1 over the run's seeds (mean ± 95 % t-interval
    half-width) and trainable parameters."""
    if test_top1:
        stats = seed_interval(test_top1)
        half = (
            "" if math.isnan(stats.ci_low) else f" ± {100 * (stats.ci_high - stats.ci_low) / 2:.1f}"
        )
        seeds = f"{stats.n} seed{'s' if stats.n != 1 else ''}"
        test = f"test top-1 {100 * stats.mean:.1f}{half} % ({seeds})"
    else:
        test = "test top-1 not evaluated"
    trainable = summary.get("trainable_params")
    params = f"{int(trainable):,} trainable params" if trainable is not None else ""
    return "; ".join(
        part
        for part in (
            f"run {run}",
            f"method {summary.get('method', '?')}",
            f"backbone {summary.get('backbone', '?')}",
            f"data {data_hash[:12]}",
            test,
            params,
        )
        if part
    )


@dataclasses.dataclass(frozen=True)
class Candidate:
    """The version a run registers: its seed's artifact, package, smoke set, lineage tags and
    description."""

    run: str
    seed: int
    mean: float
    artifact_dir: str
    package: dict[str, Any]
    smoke: SmokeSet
    lineage: dict[str, str]
    description: str = ""


def candidate(
    run: str,
    seeds: Mapping[int, tuple[str, Mapping[str, Any]]],
    backbone_specs: Mapping[str, Mapping[str, Any]],
    validation: tuple[list[str], np.ndarray, np.ndarray],
    params: Mapping[str, Any],
    training: Mapping[str, Any],
    common: Mapping[str, str],
    test_top1: list[float] | None = None,
) -> Candidate:
    """A run's candidate from its seeds' (artifact_dir, train_summary), packaged for the
    data's `validation` (classes, images, labels), with `common` lineage tags added and
    `test_top1` (one per seed, for the description only: never for selection)."""
    metric_name = str(params["metric"])
    seed, mean = select_candidate(run, {s: v[1] for s, v in seeds.items()}, metric_name)
    artifact_dir, summary = seeds[seed]
    if "val_top1" not in summary:
        raise ValueError(
            f"{run}.seed_{seed}.train_summary has no 'val_top1' (the artifact's validation "
            "accuracy, which the smoke test must reproduce); rerun the training pipeline"
        )
    classes, images, labels = validation
    spec = backbone_specs[summary["backbone"]]
    package = build_package(
        dict(spec),
        classes,
        images.shape[1],
        params.get("serving"),
        str(params.get("pgn_serving", "rgb")),
    )
    if "calibration" in summary:  # the evaluation's temperature and OOD detector (pyfunc_model)
        package["calibration"] = dict(summary["calibration"])
    lineage = dict(common) | {
        "params_hash": str(summary["run_key"]),  # the run identity of the chosen seed
        "training_mlflow_run_id": str(summary.get("mlflow_run_id", "none")),
        "method": summary["method"],
        "backbone_sha256": spec["sha256"],
        "seed": str(seed),
        "n_seeds": str(len(seeds)),
        f"{metric_name}_seed_mean": repr(mean),
    }
    smoke = smoke_set(images, labels, float(summary["val_top1"]), params["smoke"])
    description = describe(run, summary, str(common.get("data_hash", "unknown")), test_top1 or [])
    return Candidate(run, seed, mean, artifact_dir, package, smoke, lineage, description)
