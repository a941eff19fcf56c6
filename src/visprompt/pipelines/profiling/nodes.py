"""Nodes of the profiling pipeline: measure every run, then join with accuracy and plot."""

from __future__ import annotations

import logging
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from visprompt import backbones, methods
from visprompt.atomic import atomic_path
from visprompt.data.shards import ShardDataset, read_classes
from visprompt.evaluation.pareto import pareto_front
from visprompt.evaluation.plots import tradeoff_figure
from visprompt.pipelines import tracking
from visprompt.profiling import REFERENCE, ProfileSettings, profile_models
from visprompt.profiling.dataload import training_data_wait
from visprompt.profiling.report import efficiency_markdown
from visprompt.training import Placement, Preprocess
from visprompt.training.code_digest import code_digest
from visprompt.weights import fingerprint

log = logging.getLogger(__name__)

#: Accuracy columns taken from the evaluation's comparison table (means over seeds).
ACCURACY = ("n_seeds", "top1_mean", "top1_ci_low", "top1_ci_high", "macro_f1_mean",
            "train_time_s", "val_top1_mean")  # fmt: skip
#: Suffix of a run's profiled served form (merged LoRA, folded AP): its `deployed_*` columns.
DEPLOYED = ":deployed"
DEPLOYED_COLUMNS = ("throughput_ips", "throughput_ratio", "latency_p50_ms")


def profile_runs(
    run_names: list[str],
    backbone_specs: dict[str, dict[str, Any]],
    shards: str,
    params: dict[str, Any],
    train_defaults: dict[str, Any],
    *per_run: Any,
) -> pd.DataFrame:
    """One row per run plus one `backbone` row per backbone key, measured side by side.

    `per_run` holds (artifact_dir, train_summary) per run in `run_names` order. Runs on one
    backbone are profiled in one call, so their ratios share one reference. Each run's figures
    go to its MLflow run (by the id in its summary: no catalog dataset can name it). With
    `params.cache_dir`, a backbone's table is reused while everything it was measured from
    is unchanged.
    """
    if len(per_run) != 2 * len(run_names):
        raise ValueError(f"expected 2 inputs per run for {run_names}, got {len(per_run)}")
    if REFERENCE in run_names:
        raise ValueError(f"a training run may not be named '{REFERENCE}' (the bare backbone row)")
    artifacts = dict(zip(run_names, per_run[0::2], strict=True))
    summaries = dict(zip(run_names, per_run[1::2], strict=True))
    batch_size = int(params.get("train_batch_size") or train_defaults["batch_size"])
    jobs = [
        _BackboneJob(
            key,
            backbone_specs[key],
            [r for r in run_names if summaries[r]["backbone"] == key],
            artifacts,
            summaries,
            shards,
            params,
            batch_size,
        )
        for key in dict.fromkeys(s["backbone"] for s in summaries.values())
    ]
    table = pd.concat([_cached(params.get("cache_dir"), job) for job in jobs], ignore_index=True)
    for run in run_names:
        row = table[table["run"] == run].iloc[0]
        figures = row.drop(["run", "method", "backbone"]).to_dict()
        tracking.log_changed_numbers(run, summaries[run].get("mlflow_run_id"), figures, "eff_")
    return table


@dataclass(frozen=True)
class _BackboneJob:
    """The runs on one backbone and everything their measurements depend on."""

    key: str
    spec: dict[str, Any]
    runs: list[str]
    artifacts: dict[str, str]
    summaries: dict[str, dict[str, Any]]
    shards: str
    params: dict[str, Any]
    batch_size: int

    def cache_key(self) -> str:
        """The inputs of this backbone's measurements, as one digest."""
        runs, summaries = self.runs, self.summaries
        settings = {k: v for k, v in self.params.items() if k != "cache_dir"}
        engines = {r: (summaries[r].get("accelerator"), summaries[r].get("precision"))
                   for r in runs}  # fmt: skip
        data = Path(self.shards) / "summary.json"
        return fingerprint(
            self.key,
            self.spec["sha256"],
            {r: summaries[r]["run_key"] for r in runs},  # the trained result's identity
            engines,
            settings,
            self.batch_size,
            data.read_text() if data.is_file() else self.shards,
            code_digest((__name__,)),  # the code these measurements run
            platform.node(),  # timings are this machine's
        )

    def measure(self) -> pd.DataFrame:
        """The backbone row and one row per run, each model timed in the same call."""
        runs, summaries, params = self.runs, self.summaries, self.params
        backbone = backbones.from_spec(self.spec)
        models = {REFERENCE: backbone}  # methods.load never changes the backbone it is given
        models |= {run: methods.load(self.artifacts[run], backbone) for run in runs}
        deployed = {run: models[run].served() for run in runs}
        models |= {run + DEPLOYED: m for run, m in deployed.items() if m is not models[run]}
        preprocess = Preprocess.from_data_config(self.spec["data_config"])
        placement = _placement(str(params.get("device", "run")), [summaries[r] for r in runs])
        settings = ProfileSettings(
            image_size=preprocess.image_size,
            train_batch_size=self.batch_size,
            infer_batch_size=int(params["infer_batch_size"]),
            warmup=int(params["warmup"]),
            repeats=int(params["repeats"]),
            latency_repeats=int(params["latency_repeats"]),
            device=str(placement.device),
            precision=placement.precision,
        )
        table = pd.DataFrame(profile_models(models, settings))
        train = ShardDataset(self.shards, "train")
        waits = {
            run: training_data_wait(models[run], train, preprocess, self.batch_size,
                                    int(params["num_workers"]), placement.device,
                                    int(params["data_wait_batches"])).fraction
            for run in runs
        }  # fmt: skip
        table.insert(0, "run", table["method"])
        table["method"] = [summaries.get(r, {"method": REFERENCE})["method"] for r in table["run"]]
        table.insert(2, "backbone", self.key)
        table["data_wait_frac"] = table["run"].map(waits)
        return _with_deployed(table)


def _cached(cache_dir: str | None, job: _BackboneJob) -> pd.DataFrame:
    """`job.measure()`, or the table it returned for the same inputs (`<cache_dir>/<key>.csv`)."""
    if not cache_dir:
        return job.measure()
    path = Path(cache_dir) / f"{job.cache_key()[:32]}.csv"
    if path.is_file():
        log.info("profiling: inputs unchanged, reusing %s", path)
        return pd.read_csv(path)
    table = job.measure()
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    return table


def _with_deployed(table: pd.DataFrame) -> pd.DataFrame:
    """`deployed_*` columns per run: its merged/folded model's figures, else its own."""
    own = table[~table["run"].str.endswith(DEPLOYED)].copy()
    merged = table[table["run"].str.endswith(DEPLOYED)]
    merged = merged.assign(run=merged["run"].str.removesuffix(DEPLOYED)).set_index("run")
    for column in DEPLOYED_COLUMNS:
        own[f"deployed_{column}"] = own["run"].map(merged[column]).fillna(own[column])
    own["deployed_merged"] = own["run"].isin(merged.index)
    return own.reset_index(drop=True)


def _placement(device: str, summaries: list[dict[str, Any]]) -> Placement:
    """`run`: where and in which precision the runs trained (they must agree); else the
    named device (`auto`, `cpu`, `cuda`) in fp32."""
    if device != "run":
        return Placement.on(device)
    engines = {(s.get("accelerator", "cpu"), s.get("precision", "32-true")) for s in summaries}
    if len(engines) > 1:
        raise ValueError(
            f"profiling.device is 'run' but the runs trained on different engines {engines}; "
            "set profiling.device to one device (e.g. cuda) to compare them there in fp32"
        )
    accelerator, precision = engines.pop()
    return Placement.from_engine({"accelerator": accelerator, "precision": precision})


def efficiency_report(
    profile: pd.DataFrame, comparison: pd.DataFrame, shards: str
) -> tuple[pd.DataFrame, str, dict[str, Figure]]:
    """(efficiency table joined with accuracy, its Markdown, trade-off plots: test top-1
    against throughput, trainable parameters and training time, Pareto fronts drawn)."""
    missing = [c for c in ("run", *ACCURACY) if c not in comparison.columns]
    if missing:
        raise ValueError(f"comparison table lacks columns {missing}; rerun the evaluation pipeline")
    table = profile.merge(comparison[["run", *ACCURACY]], on="run", how="left")
    runs = table[table["method"] != REFERENCE].reset_index(drop=True)
    table["pareto_throughput"] = False
    table.loc[table["method"] != REFERENCE, "pareto_throughput"] = pareto_front(
        runs, "throughput_ips", "top1_mean", cost_lower=False
    ).to_numpy()
    chance = len(read_classes(shards))
    plots = {
        "accuracy_vs_throughput.png": tradeoff_figure(
            runs, "throughput_ips", x_label="inference throughput (images/s, higher is better)",
            title="Accuracy vs inference throughput", x_lower_better=False, num_classes=chance,
        ),
        "accuracy_vs_trainable_params.png": tradeoff_figure(
            runs, "trainable_params", x_label="trainable parameters (log scale)",
            title="Accuracy vs trainable parameters", log_x=True, num_classes=chance,
        ),
        "accuracy_vs_train_time.png": tradeoff_figure(
            runs, "train_time_s", x_label="training time per seed (s, mean over seeds)",
            title="Accuracy vs training time", num_classes=chance,
        ),
    }  # fmt: skip
    return table, efficiency_markdown(table), plots
