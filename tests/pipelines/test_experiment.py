"""The experiment: one name for reports and registered model, a namespace subset compared on
its own, and an input size stated once per backbone (the data follows or is checked)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kedro.io.core import DatasetError
from kedro.pipeline import Pipeline
from pipeline_kit import ROOT, project_catalog

from visprompt.data.shards import read_split
from visprompt.pipelines import experiment
from visprompt.pipelines.data_ingestion.nodes import ingest_images
from visprompt.pipelines.evaluation import pipeline as evaluation
from visprompt.pipelines.kedro_run import preflight
from visprompt.pipelines.registry import pipeline as registry
from visprompt.pipelines.runs import command_parameters, configured_runs
from visprompt.pipelines.training.datasets import MethodArtifactDataset
from visprompt.training import Preprocess
from visprompt.training.runs import ConfigError
from visprompt.weights import materialise

CPU = {"accelerator": "cpu", "devices": 1, "strategy": "auto", "precision": "32-true"}


def _pipelines(monkeypatch: pytest.MonkeyPatch, params: dict[str, Any]) -> Pipeline:
    """evaluation + registry as the session would build them from `params`."""
    runs = configured_runs(params)
    for module in (evaluation, registry):
        monkeypatch.setattr(module, "project_parameters", lambda: params)
        monkeypatch.setattr(module, "configured_runs", lambda: runs)
    return evaluation.create_pipeline() + registry.create_pipeline()


def test_namespaces_a_b_compare_and_register_exactly_a_and_b(monkeypatch) -> None:
    """`kedro run --namespaces vp,ap_vit`: the options the project's run passes to Kedro
    select vp's and ap_vit's nodes plus the experiment's reports over those two runs only."""
    options = {"namespaces": ["vp", "ap_vit"], "pipelines": [], "params": {}}
    options = experiment.with_reports(options, preflight(options))
    assert options["namespaces"] == ["ap_vit", "digits", "vp"]
    params = command_parameters(runtime_params=options["params"])
    assert experiment.names(params["experiment"]["runs"]) == ["vp", "ap_vit"]
    chosen = _pipelines(monkeypatch, params).only_nodes_with_namespaces(options["namespaces"])
    reports = {n.name: n for n in chosen.nodes if n.namespace == "digits"}
    assert set(reports) == {"digits.compare_runs", "digits.dvc_files", "digits.register_runs"}
    for node in reports.values():
        runs = {name.split(".")[0] for name in node.inputs if ".seed_" in name}
        assert runs == {"vp", "ap_vit"}, node.name
    compared = [n for n in reports["digits.compare_runs"].inputs if n.endswith("test_metrics")]
    assert compared == [f"{r}.seed_{s}.test_metrics" for r in ("vp", "ap_vit") for s in (0, 1, 2)]
    evaluated = {n.name for n in chosen.nodes if n.name.endswith(".evaluate")}
    assert evaluated == {f"{r}.seed_{s}.evaluate" for r in ("vp", "ap_vit") for s in (0, 1, 2)}


def test_a_single_seed_and_other_pipelines_keep_their_namespaces() -> None:
    one = experiment.with_reports({"namespaces": ["vp.seed_1"]}, command_parameters())
    assert one["params"] == {"experiment": {"runs": "vp.seed_1"}}
    params = command_parameters(runtime_params=one["params"])
    assert experiment.layout(params, configured_runs(params)) == [("vp", 1)]
    training = {"namespaces": ["vp"], "pipelines": ["training"]}
    assert experiment.with_reports(training, command_parameters()) == training
    assert experiment.with_reports({"namespaces": []}, command_parameters()) == {"namespaces": []}


def test_two_experiments_write_their_reports_apart(tmp_path: Path) -> None:
    catalog = project_catalog([], tmp_path)
    paths = set()
    for name in ("digits", "fashion_mnist"):
        for report in ("comparison", "comparison_markdown", "registry_summary", "claims"):
            path = catalog.get(f"{name}.{report}")._describe()  # noqa: SLF001
            path = str(path.get("filepath") or path["dataset"]["filepath"])
            assert f"08_reporting/{name}/" in path, path
            paths.add(path)
    assert len(paths) == 8


def test_an_experiment_name_must_be_a_folder_name_and_not_a_run() -> None:
    with pytest.raises(ConfigError, match="experiment.name is 'a/b'"):
        experiment.name({"experiment": {"name": "a/b"}})
    with pytest.raises(ConfigError, match="experiment.name 'vp' is also a run name"):
        preflight({"params": {"experiment": {"name": "vp"}}})


def _lite0_128() -> dict[str, Any]:
    """The Fashion-MNIST recipe's parameters with ONE setting: Lite0 at 128 px (digits as the
    source, a few images per class, so the test runs offline and fast)."""
    recipe = yaml.safe_load((ROOT / "pipelines" / "fashion_mnist.yml").read_text())["run"]
    runtime = recipe["params"] | {"backbone": {"models": {"lite0": {"image_size": 128}}}}
    runtime["data_ingestion"] |= {"source": "digits", "sources": {"digits": {}}}
    return command_parameters(runtime_params=runtime)


def test_one_setting_trains_lite0_at_128_px_on_128_px_shards(tmp_path: Path) -> None:
    params = _lite0_128()
    data, backbone = params["data_ingestion"], params["backbone"]
    assert data["image_size"] is None  # the recipe states no data size: it follows Lite0
    data["sources"]["digits"] = {"subset": {"max_per_class": 3, "seed": 0}}
    ingest_images(data, str(tmp_path / "staging"), backbone)
    images, _ = read_split(tmp_path / "staging", "train")
    entry = backbone["models"][backbone["build"]["cnn"]]
    spec = materialise("cnn", entry, {}, CPU, tmp_path / "specs", tmp_path / "ckpt")
    assert spec["data_config"]["input_size"][1:] == [128, 128]
    assert Preprocess.from_data_config(spec["data_config"]).image_size == 128  # what trains
    assert images.shape[1:3] == (128, 128)  # the shards agree: no resize on the device


def test_the_default_keeps_its_32_px_shards_and_lite0_at_64() -> None:
    params = command_parameters()
    assert experiment.data_image_size(params["data_ingestion"], params["backbone"]) == 32
    fashion = _lite0_128()
    fashion["backbone"]["models"]["lite0"]["image_size"] = 64
    assert experiment.data_image_size(fashion["data_ingestion"], fashion["backbone"]) == 64


def test_a_data_size_no_backbone_takes_is_refused_before_the_run() -> None:
    options = {"params": {"data_ingestion": {"image_size": 128}}, "namespaces": []}
    with pytest.raises(ConfigError) as refused:  # `kedro run` prints it as one paragraph
        preflight(options)
    message = str(refused.value)
    assert "parameters_data_ingestion.yml: data_ingestion.image_size is 128" in message
    assert "(vit: 32 px, cnn: 64 px)" in message
    assert "backbone.models.lite0.image_size: 128" in message and "null" in message


def test_a_missing_artifact_names_a_namespace_kedro_run_accepts(tmp_path: Path) -> None:
    """A report of runs not trained yet says which `--namespaces` trains them (not `seed_1`)."""
    with pytest.raises(DatasetError, match=r"`kedro run --namespaces vp\.seed_1`") as missing:
        MethodArtifactDataset(str(tmp_path / "methods/vp/seed_1")).load()
    suggested = str(missing.value).split("--namespaces ")[1].split("`")[0]
    preflight({"namespaces": [suggested]})  # accepted: no error
