"""A teammate reproduces a result (README, "Reproduce"): clone A runs `dvc repro` and
`dvc push` to a shared remote; clone B, a fresh `git clone` in another folder, runs
`dvc pull` and gets byte-identical outputs, `dvc status` reports nothing changed, `dvc repro`
runs nothing, and the comparison table is identical.

The shared remote starts in the test: a directory both clones reach, and the same folder
served over SSH by a real OpenSSH server on 127.0.0.1 (the second clone pulls through it
when sshd is installed, as `.ci/run` does)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import yaml
from e2e.conftest import ProjectCopy, make_project_copy
from e2e.e2e_kit import make_tiny, tiny_training
from e2e.sshd import running_sshd, sshd_available

pytestmark = pytest.mark.slow

STAGE = "comparison"  # the last stage of the default chain in dvc.yaml; its deps pull the rest
RUN = "lp"
TABLE = "data/08_reporting/digits/comparison.csv"


def _ok(result) -> str:
    assert result.returncode == 0, f"{result.args}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _output_digests(root: Path) -> dict[str, str]:
    """sha256 of every file under every output recorded in dvc.lock."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    outs = [out["path"] for stage in lock["stages"].values() for out in stage.get("outs", [])]
    digests = {}
    for out in outs:
        path = root / out
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            digests[str(file.relative_to(root))] = hashlib.sha256(file.read_bytes()).hexdigest()
    return digests


@pytest.fixture(scope="module")
def pushed(tmp_path_factory) -> tuple[ProjectCopy, Path, dict[str, str]]:
    """Clone A: the pipeline reproduced through DVC and pushed to a fresh shared remote."""
    base = tmp_path_factory.mktemp("team")
    repo = make_project_copy(base)
    stages = yaml.safe_load((repo.path / "dvc.yaml").read_text())["stages"]
    if STAGE not in stages:
        pytest.skip(f"dvc.yaml has no '{STAGE}' stage yet (stages: {sorted(stages)})")
    make_tiny(repo, tiny_training([RUN]), {"num_images": 80, "seed": 2})
    remote = base / "shared-remote"
    remote.mkdir()
    _ok(repo.command("git", "init", "-q"))
    _ok(repo.command("dvc", "remote", "add", "-f", "-d", "shared", str(remote)))
    _ok(repo.command("git", "add", "-A"))
    _ok(repo.command("git", "commit", "-qm", "project with a shared remote"))
    _ok(repo.command("dvc", "repro", STAGE, timeout=900))
    _ok(repo.command("git", "add", "-A"))
    _ok(repo.command("git", "commit", "-qm", "dvc.lock"))
    _ok(repo.command("dvc", "push"))
    digests = _output_digests(repo.path)
    assert TABLE in digests and len(digests) > 5, sorted(digests)
    return repo, remote, digests


def _teammate(repo: ProjectCopy, name: str) -> ProjectCopy:
    clone = repo.path.parent / name
    _ok(repo.command("git", "clone", "-q", str(repo.path), str(clone)))
    home = clone.parent / f"{name}-home"
    home.mkdir()
    fresh = ProjectCopy(path=clone, env=repo.env | {"HOME": str(home)})
    assert not (clone / TABLE).exists()
    return fresh


def _pull_and_check(fresh: ProjectCopy, digests: dict[str, str]) -> None:
    _ok(fresh.command("dvc", "pull", "--with-deps", STAGE))
    assert _output_digests(fresh.path) == digests  # byte-identical outputs, every file
    status = _ok(fresh.command("dvc", "status", "--with-deps", STAGE))
    assert "up to date" in status.lower(), status
    repro = _ok(fresh.command("dvc", "repro", STAGE))  # re-checks every stage up to STAGE
    assert "Running stage" not in repro, repro
    assert _output_digests(fresh.path) == digests
    assert _ok(fresh.command("git", "status", "--porcelain")) == ""  # nothing dirtied


def test_teammate_pulls_identical_outputs_from_a_directory_remote(pushed) -> None:
    repo, _, digests = pushed
    _pull_and_check(_teammate(repo, "teammate-dir"), digests)


@pytest.mark.skipif(not sshd_available(), reason="OpenSSH server not installed")
def test_teammate_pulls_identical_outputs_over_ssh(pushed) -> None:
    repo, remote, digests = pushed
    fresh = _teammate(repo, "teammate-ssh")
    with running_sshd(fresh.path.parent / "sshd") as server:
        ssh_dir = Path(fresh.env["HOME"]) / ".ssh"
        ssh_dir.mkdir(mode=0o700)
        shutil.copy(server.known_hosts, ssh_dir / "known_hosts")
        url = f"ssh://{server.user}@127.0.0.1:{server.port}{remote}"
        _ok(fresh.command("dvc", "remote", "modify", "--local", "shared", "url", url))
        _ok(
            fresh.command(
                "dvc", "remote", "modify", "--local", "shared", "keyfile", str(server.client_key)
            )
        )
        _pull_and_check(fresh, digests)
