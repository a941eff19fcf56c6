"""What `kedro run` prints (Kedro's own chatter is turned down in conf/logging.yml): one line
per finished node, with its result where a person checks it, and a closing summary: the best
runs with their intervals, the registry's champion, where the reports are, how to open MLflow.

The training nodes of a run are its job (`progress.Job`): their bars and lines carry the
seed's name, its position among them and the job's ETA; a seed read back finished says
"reused".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from kedro.framework.hooks import hook_impl
from kedro.io import CatalogProtocol
from kedro.pipeline import Pipeline
from kedro.pipeline.node import Node

from visprompt import progress
from visprompt.pipelines import tracking

log = logging.getLogger("visprompt.run")

#: Datasets whose saved value the summary reads (the last part of `digits.comparison`).
_KEPT = ("comparison", "significance", "registry_summary")
#: Outputs whose location the summary points to, in this order.
_REPORTS = ("comparison_markdown", "comparison_plots", "efficiency_markdown", "efficiency_plots")
TOP_ROWS = 5


def validation_verdict(report: Mapping[str, Any]) -> str:
    """`data validation: passed, 12/12 rules` or `... FAILED, 10/12 rules (a, b failed)`."""
    rules = report.get("rules") or {}
    failed = sorted(rule for rule, ok in rules.items() if not ok)
    verdict = "passed" if report.get("success") else "FAILED"
    text = f"data validation: {verdict}, {len(rules) - len(failed)}/{len(rules)} rules"
    return text + (f" ({', '.join(failed)} failed)" if failed else "")


def training_note(summary: Mapping[str, Any]) -> str:
    """`best val top1 0.763 at epoch 5, 2602/471962 trainable` for one seed's training."""
    return (
        f"best val top1 {summary['best_val_top1']:.3f} at epoch {summary['best_epoch']}, "
        f"{summary['trainable_params']}/{summary['total_params']} trainable"
    )


def backbones_note(specs: Mapping[str, Mapping[str, Any]]) -> str:
    """`vit: vit_tiny_patch16_224 from pretrain; cnn: ... from package`."""
    return "; ".join(f"{key}: {spec['name']} from {spec['source']}" for key, spec in specs.items())


def prompt_inits_note(index: Mapping[str, Mapping[str, Any]]) -> str:
    """`spt_kmeans (kmeans), spt_random (random)`: the prompt inits built."""
    return ", ".join(f"{name} ({entry['metadata']['strategy']})" for name, entry in index.items())


def test_note(metrics: Mapping[str, Any]) -> str:
    """`test top1 0.912` for one seed's evaluation on the test split."""
    return f"test top1 {metrics['top1']:.3f}"


def registry_note(summary: Mapping[str, Any]) -> str:
    """`18 runs: 1 versions registered, 17 unchanged, 0 promoted, 0 refused; champion v15`:
    only new versions count as registered (a run whose artifact is a version already is
    `unchanged`)."""
    decisions = summary.get("decisions", [])
    kept = sum(1 for d in decisions if d.get("version") is not None)
    unchanged = sum(1 for d in decisions if d.get("unchanged"))
    promoted = sum(1 for d in decisions if d.get("promoted"))
    champion = summary.get("champion")
    return (
        f"{len(decisions)} runs: {kept - unchanged} versions registered, "
        + (f"{unchanged} unchanged, " if unchanged else "")
        + f"{promoted} promoted, {len(decisions) - kept} refused; "
        + (f"champion v{champion}" if champion is not None else "no champion")
    )


#: A node's output (its name, or the last part of a namespaced name) -> its one-line result.
NOTES: dict[str, Callable[[Any], str]] = {
    "train_summary": training_note,
    "test_metrics": test_note,
    "backbone_specs": backbones_note,
    "validation_report": validation_verdict,
    "prompt_inits": prompt_inits_note,
    "registry_summary": registry_note,
}


def node_note(outputs: Mapping[str, Any]) -> str:
    """The results among a node's outputs that the console states, joined; '' for none."""
    notes = []
    for name, value in outputs.items():
        note = NOTES.get(name.rsplit(".", 1)[-1])
        if note is not None and isinstance(value, Mapping):
            notes.append(note(value))
    return "; ".join(notes)


def _accuracy(row: pd.Series) -> str:
    """Test top-1 in %: the seed mean ± half its 95 % interval, or the single run's value."""
    if "top1_mean" not in row:
        return f"{100 * row['top1']:5.1f}"
    text = f"{100 * row['top1_mean']:5.1f}"
    low, high = row.get("top1_ci_low"), row.get("top1_ci_high")
    if low is not None and high is not None and pd.notna(low) and pd.notna(high):
        text += f" ± {100 * (high - low) / 2:.1f}"
    return text


def _vs_best(significance: pd.DataFrame | None) -> dict[str, str]:
    """run -> `Δ -6.8 pts vs best, p 0.097 (≈ best)` from the paired tests against the best."""
    if significance is None or not len(significance):
        return {}
    rows = significance[significance["reference_kind"] == "best"]
    return {
        r["run"]: f"Δ {100 * r['mean_diff']:+.1f} pts vs best, p {r['p_value']:.3g}"
        + ("" if r["distinguishable"] else " (≈ best)")
        for _, r in rows.iterrows()
    }


def top_rows(
    table: pd.DataFrame, rows: int = TOP_ROWS, significance: pd.DataFrame | None = None
) -> list[str]:
    """The best `rows` runs as aligned lines (run, method, backbone, test top-1 ± CI, params,
    the paired difference to the best)."""
    mean = "top1_mean" if "top1_mean" in table.columns else "top1"
    ranked = table.sort_values(mean, ascending=False).head(rows)
    width = max(len(str(r)) for r in ranked["run"])
    tests = _vs_best(significance)
    return [
        f"  {row['run']:<{width}}  {row['method']:<13} {row['backbone']:<9} "
        f"top-1 {_accuracy(row)} %  {int(row['trainable_params']):>9,} trainable params"
        + (f"; {tests[row['run']]}" if row["run"] in tests else "")
        for _, row in ranked.iterrows()
    ]


def registry_lines(summary: Mapping[str, Any]) -> list[str]:
    """The champion after this run and whether (from which version) the alias moved."""
    name, champion = summary.get("model_name"), summary.get("champion")
    moved = [d for d in summary.get("decisions", []) if d.get("promoted")]
    if moved:
        last = moved[-1]
        before = f"v{last['champion_before']}" if last.get("champion_before") else "none"
        return [
            f"  champion: {name} v{champion} (run {last['run']}); alias moved {before} -> "
            f"v{last['version']}"
        ]
    return [f"  champion: {name} v{champion} (unchanged: no candidate beat it)"]


def is_training(node: Node) -> bool:
    """A node that trains one seed (its output `<run>.seed_<s>.train_summary`)."""
    return f"{node.namespace}.train_summary" in node.outputs


def _location(catalog: CatalogProtocol, name: str) -> str | None:
    try:
        path = catalog.get(name)._describe().get("filepath")  # noqa: SLF001
    except (KeyError, AttributeError):
        return None
    return str(path) if path and Path(path).exists() else None


def _relative(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return path


class ConsoleHook:
    """One line per finished node (with its result) and the end-of-run summary."""

    def __init__(self) -> None:
        self._started: dict[str, float] = {}
        self._saved: dict[str, Any] = {}
        self._names: dict[str, str] = {}  # a report's short name -> its dataset name
        self._total = self._done = 0
        self._run_start = 0.0
        self._mlflow_url: str | None = None

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline) -> None:
        self._total, self._done, self._saved, self._names = len(pipeline.nodes), 0, {}, {}
        self._run_start, self._mlflow_url = time.perf_counter(), None
        progress.start_job(sum(1 for n in pipeline.nodes if is_training(n)))

    @hook_impl
    def before_node_run(self, node: Node) -> None:
        self._started[node.name] = time.perf_counter()
        self._mlflow_url = self._mlflow_url or tracking.experiment_url()
        job = progress.current_job()
        if job is not None and not is_training(node):
            job.other = node.name  # its bars say whose they are: `vp.seed_1.evaluate predict`
        if job is not None and is_training(node):
            job.begin(str(node.namespace))
            log.info("%s training (%d/%d), %s", node.namespace, job.position, job.total,
                job.eta_text())  # fmt: skip
        log.debug("%s started", node.name)

    @hook_impl
    def after_node_run(self, node: Node, outputs: dict[str, Any]) -> None:
        self._done += 1
        seconds = time.perf_counter() - self._started.pop(node.name, time.perf_counter())
        notes = [node_note(outputs)]
        job = progress.current_job()
        if job is not None:
            job.other = ""
        if job is not None and is_training(node):
            done = f"{job.position}/{job.total}"
            if job.end():
                notes.insert(0, "reused (finished earlier with the same inputs)")
            else:
                notes.append(f"training {done}, {job.eta_text()}")
        note = "; ".join(n for n in notes if n)
        log.info(
            "[%d/%d] %s %.1f s%s", self._done, self._total, node.name, seconds,
            f": {note}" if note else "",
        )  # fmt: skip

    @hook_impl
    def on_node_error(self, node: Node) -> None:
        job = progress.current_job()
        if job is not None and is_training(node):
            job.end()

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any) -> None:
        short = dataset_name.rsplit(".", 1)[-1]
        if short in _KEPT:
            self._saved[short] = data
        self._names.setdefault(short, dataset_name)

    @hook_impl
    def on_pipeline_error(self) -> None:
        progress.end_job()  # a failed run's job must not prefix the bars that come after it

    @hook_impl
    def after_pipeline_run(self, catalog: CatalogProtocol) -> None:
        progress.end_job()
        print("\n".join(self.summary(catalog)), flush=True)

    def summary(self, catalog: CatalogProtocol) -> list[str]:
        """The closing lines of a successful run."""
        minutes = (time.perf_counter() - self._run_start) / 60
        lines = [f"visprompt: {self._done} nodes done in {minutes:.1f} min"]
        comparison = self._saved.get("comparison")
        if isinstance(comparison, pd.DataFrame) and len(comparison):
            ranked = top_rows(comparison, significance=self._saved.get("significance"))
            lines += [f"best runs (test top-1, {len(comparison)} runs):", *ranked]
        if "registry_summary" in self._saved:
            lines += registry_lines(self._saved["registry_summary"])
        names = (self._names.get(n, n) for n in _REPORTS)
        reports = [_relative(p) for n in names if (p := _location(catalog, n))]
        if reports:
            lines.append("  reports: " + ", ".join(reports))
        where = self._mlflow_url or "http://127.0.0.1:5000"
        lines.append(f"  MLflow: kedro mlflow ui, then open {where}")
        return lines
