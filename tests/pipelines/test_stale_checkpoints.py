"""No stale checkpoints: a finished run is reused only while its code is unchanged.

The package is copied to a tmp dir and imported from there in a subprocess (PYTHONPATH), so
the test can edit a method's forward pass without touching the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from pipeline_kit import ENGINE

from visprompt.training.code_digest import PACKAGE_ROOT

OLD = "return self.head(pooled_features(self.backbone, images))"
SCRIPT = """
import json, sys
from pathlib import Path
import mlflow
import visprompt
from visprompt.pipelines.training.nodes import train_run

args = json.loads(sys.argv[1])
package = Path(visprompt.__file__).resolve().parent
assert package.is_relative_to(args["copy"]), package
mlflow.set_tracking_uri(args["mlflow"])
mlflow.set_experiment("stale-checkpoints")
root = Path(args["root"])
for step in ("train", "again", "edited"):
    if step == "edited":  # edit the forward pass of the method this run executes
        probe = package / "methods" / "linear_probe.py"
        probe.write_text(probe.read_text().replace(args["old"], args["old"] + " * 0.5"))
    _, summary, _ = train_run(
        "lp", 0, {"method": "linear_probe", "backbone": "vit"}, args["defaults"], args["engine"],
        str(root), args["shards"], args["summary"], {"vit": args["spec"]},
    )
    ckpts = {p.parent.name: p.stat().st_mtime_ns for p in root.glob("*/last.ckpt")}
    print("RESULT " + json.dumps({"ckpts": ckpts, "val_top1": summary["val_top1"]}), flush=True)
"""


def test_editing_a_method_forward_retrains(
    tmp_path: Path, shard_dir: Path, shard_summary: dict, vit_spec: dict, mlflow_store: str
) -> None:
    copy = tmp_path / "src"
    shutil.copytree(PACKAGE_ROOT, copy / "visprompt", ignore=shutil.ignore_patterns("__pycache__"))
    assert OLD in (copy / "visprompt" / "methods" / "linear_probe.py").read_text()
    args = {
        "copy": str(copy),
        "old": OLD,
        "mlflow": mlflow_store,
        "root": str(tmp_path / "checkpoints"),
        "defaults": {"epochs": 1, "batch_size": 16, "lr": 0.05, "progress": False},
        "engine": ENGINE,
        "shards": str(shard_dir),
        "summary": shard_summary,
        "spec": vit_spec,
    }
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(args)],
        env={**os.environ, "PYTHONPATH": str(copy)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [ln.removeprefix("RESULT ") for ln in result.stdout.splitlines() if "RESULT " in ln]
    first, again, edited = (json.loads(ln) for ln in lines)
    # unchanged code: the finished checkpoint is reused (same folder, not rewritten)
    assert len(first["ckpts"]) == 1 and again["ckpts"] == first["ckpts"]
    assert again["val_top1"] == first["val_top1"]
    # edited forward: trained again into a new checkpoint folder; the old one is kept as it was
    (old_name,) = first["ckpts"]
    assert len(edited["ckpts"]) == 2 and edited["ckpts"][old_name] == first["ckpts"][old_name]
