"""No stale checkpoints: a finished run is reused only while its code is unchanged, and its
reuse trains nothing and runs no forward pass over the data.

The package is copied to a tmp dir and imported from there in a subprocess (PYTHONPATH), so
the test can edit the shard reader and a method's forward pass without touching the
repository. The code that decides a result is derived from the run service's imports
(`code_digest`), so no list has to remember `data/shards.py`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from pipeline_kit import ENGINE

from visprompt.training.code_digest import SOURCE_ROOT

OLD = "return self.head(pooled_features(self.backbone, images))"
SCRIPT = """
import json, sys, time
from pathlib import Path
import visprompt
from visprompt.pipelines.training.nodes import train_run
from visprompt.training import prefix_cache, service
from visprompt.training.runs import RunSpec

args = json.loads(sys.argv[1])
package = Path(visprompt.__file__).resolve().parent
assert package.is_relative_to(args["copy"]), package
calls = {"fit": 0, "prefix_builds": 0}

def counted(name, func):
    def wrapper(*a, **k):
        calls[name] += 1
        return func(*a, **k)
    return wrapper

service.fit = counted("fit", service.fit)
prefix_cache._build = counted("prefix_builds", prefix_cache._build)
root = Path(args["root"])
spec = RunSpec(name="lp", method="linear_probe", backbone="vit")
for step in ("train", "again", "shards_edited", "method_edited"):
    if step == "shards_edited":  # the shard reader feeds every batch: its code decides results
        shards = package / "data" / "shards.py"
        shards.write_text(shards.read_text() + "\\n# an edit of the shard reader\\n")
    if step == "method_edited":  # edit the forward pass of the method this run executes
        probe = package / "methods" / "linear_probe" / "model.py"
        probe.write_text(probe.read_text().replace(args["old"], args["old"] + " * 0.5"))
    service.code_digest.cache_clear()  # a new `kedro run` derives the digest afresh
    before, start = dict(calls), time.perf_counter()
    _, summary, _ = train_run(
        spec, 0, args["defaults"], args["engine"], str(root), args["shards"], args["summary"],
        {"vit": args["spec"]},
    )
    ckpts = {p.parent.name: p.stat().st_mtime_ns for p in root.glob("*/last.ckpt")}
    result = {
        "ckpts": ckpts,
        "val_top1": summary["val_top1"],
        "run_key": summary["run_key"],
        "calls": {k: calls[k] - before[k] for k in calls},
        "seconds": time.perf_counter() - start,
    }
    print("RESULT " + json.dumps(result), flush=True)
"""


def test_reuse_trains_nothing_and_edited_code_retrains(
    tmp_path: Path, shard_dir: Path, shard_summary: dict, vit_spec: dict
) -> None:
    copy = tmp_path / "src"
    shutil.copytree(
        SOURCE_ROOT / "visprompt", copy / "visprompt", ignore=shutil.ignore_patterns("__pycache__")
    )
    assert OLD in (copy / "visprompt" / "methods" / "linear_probe" / "model.py").read_text()
    args = {
        "copy": str(copy),
        "old": OLD,
        "root": str(tmp_path / "checkpoints"),
        # the prefix cache is on: a reuse that reached `fit` would build it
        "defaults": {"epochs": 1, "batch_size": 16, "lr": 0.05, "progress": False}
        | {"cache_prefix": True},
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
    first, again, shards_edited, method_edited = (json.loads(ln) for ln in lines)
    assert first["calls"] == {"fit": 1, "prefix_builds": 2}  # train and val prefixes
    # unchanged code: the finished seed is returned as it was; no fit, no prefix forward pass
    assert again["calls"] == {"fit": 0, "prefix_builds": 0}
    assert len(first["ckpts"]) == 1 and again["ckpts"] == first["ckpts"]
    assert (again["val_top1"], again["run_key"]) == (first["val_top1"], first["run_key"])
    # an edited shard reader, then an edited forward: each a new key, trained again into a new
    # checkpoint folder; the old ones are kept as they were
    keys = {r["run_key"] for r in (first, shards_edited, method_edited)}
    assert len(keys) == 3
    assert shards_edited["calls"]["fit"] == 1 == method_edited["calls"]["fit"]
    (old_name,) = first["ckpts"]
    assert len(method_edited["ckpts"]) == 3
    assert method_edited["ckpts"][old_name] == first["ckpts"][old_name]
