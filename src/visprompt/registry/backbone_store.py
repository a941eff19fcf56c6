"""Backbone weights reached through the tracking server, never through a checkout path.

A version's `package.json` references a hub backbone by timm name and tensors' sha256, any
other weights as `runs:/<id>/weights/<file>` of a `backbone-<sha>` run (stored once per
sha256). Loading checks the sha256 and refuses a mismatch; no fallback to a same-named file.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file
from torch import nn

from visprompt.backbones import create_backbone, freeze, sha256_file, tensors_sha256

SHA_TAG = "visprompt.backbone_sha256"
WEIGHTS_DIR = "weights"


def _stored_run(client: MlflowClient, sha256: str) -> str | None:
    """Id of a finished run holding these weights, in any experiment of the store."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(
        experiments, f"tags.`{SHA_TAG}` = '{sha256}' and attributes.status = 'FINISHED'", 1
    )
    return runs[0].info.run_id if runs else None


def store_weights(client: MlflowClient, experiment_id: str, path: str | Path, sha256: str) -> str:
    """`runs:/` URI of the weights with this sha256, uploading them on first sight (the
    sha tag is set after the upload, so an interrupted one is done again; the caller holds
    the registry lock)."""
    path = Path(path)
    actual = sha256_file(path)
    if actual != sha256:
        raise ValueError(
            f"backbone weights {path} have sha256 {actual[:12]}..., but the backbone spec "
            f"records {sha256[:12]}...: rerun the backbone pipeline (or `dvc checkout`) "
            "before registering"
        )
    run_id = _stored_run(client, sha256)
    if run_id is None:
        run = client.create_run(experiment_id, run_name=f"backbone-{sha256[:12]}")
        run_id = run.info.run_id
        client.log_artifact(run_id, str(path), WEIGHTS_DIR)
        client.set_tag(run_id, SHA_TAG, sha256)
        client.set_terminated(run_id)
    return f"runs:/{run_id}/{WEIGHTS_DIR}/{path.name}"


def reference(
    client: MlflowClient, experiment_id: str, spec: dict[str, Any], root: str | Path = "."
) -> dict[str, Any]:
    """The backbone part of a version's package, from a `backbone_specs` entry."""
    ref = {"name": spec["name"], "model_kwargs": dict(spec.get("model_kwargs") or {})}
    weights = Path(root) / spec["weights_path"]
    if spec.get("source") == "hub":
        # the hub file, as timm loads it, is what must match at load time
        state = load_file(str(weights))
        return ref | {"source": "hub", "tensors_sha256": tensors_sha256(state.items())}
    uri = store_weights(client, experiment_id, weights, spec["sha256"])
    return ref | {"source": "mlflow", "weights_uri": uri, "sha256": spec["sha256"]}


def load_backbone(ref: dict[str, Any]) -> nn.Module:
    """The frozen backbone a reference names, refusing weights whose checksum differs."""
    kwargs = dict(ref.get("model_kwargs") or {})
    if ref["source"] == "hub":
        model = create_backbone(ref["name"], pretrained=True, **kwargs)
        actual = tensors_sha256(model.state_dict().items())
        if actual != ref["tensors_sha256"]:
            raise ValueError(
                f"hub weights of {ref['name']} have tensor sha256 {actual[:12]}..., the "
                f"version records {ref['tensors_sha256'][:12]}...: the hub file changed; "
                "re-register the prompt on the current weights"
            )
        return freeze(model)
    with tempfile.TemporaryDirectory() as tmp:
        uri = ref["weights_uri"]
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        actual = sha256_file(local)
        if actual != ref["sha256"]:
            raise ValueError(
                f"backbone weights {ref['weights_uri']} have sha256 {actual[:12]}..., the "
                f"version records {ref['sha256'][:12]}...: the stored file is corrupted; "
                "restore it in the tracking store or re-register"
            )
        return freeze(create_backbone(ref["name"], weights=local, **kwargs))
