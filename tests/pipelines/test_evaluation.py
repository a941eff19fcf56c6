"""Evaluation pipeline: test metrics of a trained run, and the comparison across runs."""

from __future__ import annotations

import mlflow
import pytest
import torch
from pipeline_kit import project_catalog

from visprompt import backbones, methods
from visprompt.data.shards import ShardDataset
from visprompt.pipelines.evaluation.nodes import compare_runs, evaluate_run
from visprompt.pipelines.evaluation.pipeline import run_pipeline
from visprompt.pipelines.training.datasets import MethodArtifactDataset
from visprompt.training import Preprocess

PARAMS = {"batch_size": 7, "ece_bins": 10, "ood_quantile": 0.05}


@pytest.fixture(scope="module")
def evaluated(trained, vit_spec, shard_dir, tmp_path_factory, mlflow_store):
    model, summary, history = trained
    dataset = MethodArtifactDataset(str(tmp_path_factory.mktemp("artifacts") / "lp"))
    dataset.save(model)
    metrics = evaluate_run(dataset.load(), summary, {"vit": vit_spec}, str(shard_dir), PARAMS)
    return metrics


def test_test_metrics_match_the_model_on_the_test_split(evaluated, trained, vit_spec, shard_dir):
    model = trained[0].eval()
    test = ShardDataset(shard_dir, "test")
    images = torch.stack([test[i][0] for i in range(len(test))])
    labels = torch.tensor([test[i][1] for i in range(len(test))])
    with torch.no_grad():
        logits = model(Preprocess.from_data_config(vit_spec["data_config"])(images))
    expected = (logits.argmax(1) == labels).float().mean().item()
    assert evaluated["num_images"] == len(test) == 16
    assert evaluated["top1"] == pytest.approx(expected)
    assert evaluated["top5"] == 1.0  # 4 classes: top-min(5, 4) always hits
    assert len(evaluated["per_class"]) == 4 and len(evaluated["confusion"]) == 4
    assert sum(map(sum, evaluated["confusion"])) == 16


def test_calibration_is_fitted_on_validation_and_reported_on_test(
    evaluated, trained, vit_spec, shard_dir
) -> None:
    """The temperature and the OOD threshold come from the val split (not test); ECE and the
    reliability tables from test, in the stated number of bins."""
    from visprompt.evaluation.calibration import fit_ood, fit_temperature
    from visprompt.training import predict

    preprocess = Preprocess.from_data_config(vit_spec["data_config"])
    logits, labels = predict(trained[0], ShardDataset(shard_dir, "val"), preprocess, 7)
    assert evaluated["temperature"] == pytest.approx(fit_temperature(logits, labels), rel=1e-4)
    threshold = fit_ood(logits, labels, 0.05)["threshold"]
    assert evaluated["ood"]["threshold"] == pytest.approx(threshold, rel=1e-4)
    assert evaluated["ece_bins"] == 10 and evaluated["ood"]["quantile"] == 0.05
    assert sum(r["count"] for r in evaluated["reliability"]) == 16  # the test images
    assert evaluated["nll_temperature_scaled"] <= evaluated["nll"] + 0.05


def test_test_metrics_join_the_training_mlflow_run(evaluated, trained) -> None:
    run = mlflow.get_run(trained[1]["mlflow_run_id"])
    assert run.data.metrics["test_top1"] == pytest.approx(evaluated["top1"])
    assert run.data.metrics["trainable_params"] == trained[1]["trainable_params"]  # same run


def test_comparison_over_runs_and_seeds(
    evaluated, trained, shard_dir, mlflow_store, tmp_path
) -> None:
    _, summary, history = trained
    other = summary | {"run": "lp2", "method": "full_finetune", "trainable_params": 10_000}
    results = []
    for run, base, seeds in (("lp", summary, (0, 1)), ("lp2", other, (0, 1))):
        for seed in seeds:
            top1 = evaluated["top1"] * (1 if run == "lp" else 0.5) + 0.01 * seed
            results += [base | {"seed": seed}, evaluated | {"top1": top1}, history]
    layout = [("lp", 0), ("lp", 1), ("lp2", 0), ("lp2", 1)]
    # the experiment `exp`'s reports: data/08_reporting/exp/ (catalog factories)
    outputs = [f"exp.{n}" for n in ("comparison", "comparison_seeds", "significance")]
    outputs.append("exp.comparison_markdown")
    catalog = project_catalog([], tmp_path)
    with mlflow.start_run() as parent:
        table, seeds, significance, markdown, plots, run_plots = compare_runs(
            layout, str(shard_dir), *results
        )
        for name, data in zip(outputs, (table, seeds, significance, markdown), strict=True):
            catalog.save(name, data)  # the catalog logs them (kedro-mlflow), as in `kedro run`
        catalog.save("exp.comparison_plots", plots)
        catalog.save("exp.run_plots", run_plots)
    assert table["run"].tolist() == ["lp", "lp2"] and table["n_seeds"].tolist() == [2, 2]
    assert table.loc[0, "top1_mean"] == pytest.approx(evaluated["top1"] + 0.005)
    assert table.loc[table["run"] == "lp2", "trainable_params"].item() == 10_000
    assert seeds[["run", "seed"]].values.tolist() == [list(k) for k in layout]
    # lp2 vs the best (lp): the same 0.5 * top1 gap on both seeds
    vs_best = significance[significance["reference_kind"] == "best"].iloc[0]
    assert vs_best["run"] == "lp2" and vs_best["n_pairs"] == 2
    assert vs_best["mean_diff"] == pytest.approx(-0.5 * evaluated["top1"])
    assert "| lp2 " in markdown
    # the names `dvc plots show` renders (tests/evaluation/test_dvc_files.py: REPORT_PLOTS)
    assert set(plots) == {"training_curves.png", "accuracy_vs_params.png", "confusion.png",
                          "reliability.png"}  # fmt: skip
    assert plots["confusion.png"].axes[0].get_title().startswith("lp (seed 0,")  # the best
    assert set(run_plots) == {f"{r}/{f}.png" for r in ("lp", "lp2") for f in
                              ("confusion", "reliability")}  # fmt: skip
    assert (tmp_path / "data/08_reporting/exp/run_plots/lp2/confusion.png").is_file()
    logged = {
        a.path for a in mlflow.MlflowClient().list_artifacts(parent.info.run_id, "comparison")
    }
    assert {
        "comparison/comparison.csv",
        "comparison/comparison_seeds.csv",
        "comparison/significance.csv",
        "comparison/comparison.md",
        "comparison/plots",
        "comparison/run_plots",
    } == logged
    plots_logged = mlflow.MlflowClient().list_artifacts(parent.info.run_id, "comparison/plots")
    assert {a.path.rsplit("/", 1)[1] for a in plots_logged} == set(plots)
    assert (tmp_path / "data/08_reporting/exp/comparison.md").read_text() == markdown  # once


def test_compare_runs_checks_its_inputs(shard_dir) -> None:
    with pytest.raises(ValueError, match="3 inputs per \\(run, seed\\)"):
        compare_runs([("a", 0), ("b", 0)], str(shard_dir), {}, {}, {})


def test_evaluation_pipeline_is_namespaced_per_run_and_seed() -> None:
    pipe = run_pipeline("vp", (0, 1))
    assert sorted(n.name for n in pipe.nodes) == ["vp.seed_0.evaluate", "vp.seed_1.evaluate"]
    assert pipe.inputs() == {
        *(f"vp.seed_{s}.{n}" for s in (0, 1) for n in ("artifact_dir", "train_summary")),
        "backbone_specs",
        "shards",
        "params:evaluation",
    }
    assert pipe.outputs() == {"vp.seed_0.test_metrics", "vp.seed_1.test_metrics"}


def test_evaluation_rebuilds_the_backbone_from_its_spec(trained, vit_spec, tmp_path) -> None:
    path = methods.save(trained[0], tmp_path / "a")
    spec = vit_spec | {"sha256": "0" * 64}
    with pytest.raises(ValueError, match="sha256"):
        evaluate_run(str(path), trained[1], {"vit": spec}, "unused", PARAMS)


def test_pgn_runs_report_their_rgb_deployment(trained, vit_spec, shard_dir, tmp_path) -> None:
    """A PGN artifact's test metrics carry the token-vs-RGB agreement on the test split."""
    backbone = backbones.from_spec(vit_spec)
    model = methods.build("pgn", backbone, 4, num_prompts=4, library_size=8, width=2)
    path = methods.save(model.eval(), tmp_path / "pgn")
    summary = trained[1] | {"run": "pgn", "method": "pgn", "mlflow_run_id": None}
    metrics = evaluate_run(str(path), summary, {"vit": vit_spec}, str(shard_dir), PARAMS)
    assert metrics["num_images"] == 16
    assert metrics["rgb_agreement"] >= 15 / 16  # exact inversion; float rounding at most
    assert 0.0 <= metrics["rgb_agreement_uint8"] <= 1.0
    assert metrics["rgb_top1_drop_uint8"] == pytest.approx(
        metrics["top1"] - metrics["rgb_uint8_top1"]
    )
