"""Every command the README and docs/ show is preflighted, so a stale name fails `make test`.

`kedro run ...` goes through the project's own preflight (the run list, namespaces,
pipelines, `--config` recipe, `--params` keys); `make X` must be a Makefile target;
`python -m visprompt.X` an importable module whose subcommand exists; a repository path
(`pipelines/x.yml`, `benchmarks/y.py`, `tests/...`) must exist; a Markdown link must stay
inside the repository and reach a file.
"""

from __future__ import annotations

import copy
import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest
from PIL import Image

from visprompt.data.sizes import ConfigError
from visprompt.pipelines import experiment, kedro_run

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted([REPO / "README.md", *(REPO / "docs").rglob("*.md")])
TRACKED = ("pipelines/", "benchmarks/", "tests/", "src/", "conf/", "docs/", ".ci/")


def _fenced_commands(text: str) -> list[str]:
    """Shell commands of ```bash blocks, continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"```(?:bash|sh|console)\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def _inline_commands(text: str) -> list[str]:
    spans = re.findall(r"`([^`\n]+)`", text)
    return [s for s in spans if re.match(r"(kedro run|make [a-z]|python -m visprompt)", s)]


def _split(command: str) -> list[list[str]]:
    """The simple commands of a shell line (split at `&&`, `;`, `|`), as words."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars="&|;")
    lexer.whitespace_split = True
    parts: list[list[str]] = [[]]
    redirected = False
    for token in lexer:
        if token in {"&&", "||", "|", ";", "&"}:
            parts.append([])
            redirected = False
        elif token in {">", ">>", "2>", "<"} or redirected:  # `cmd > log`: not an argument
            redirected = True
        else:
            parts[-1].append(token)
    return [p for p in parts if p]


def _words(words: list[str]) -> list[str]:
    while words and re.match(r"^[A-Z_]+=", words[0]):  # VAR=value prefixes
        words = words[1:]
    if words and words[0].endswith(("/kedro", "/python", "/dvc")):
        words = [Path(words[0]).name, *words[1:]]
    return words


def _placeholder(word: str) -> bool:
    """`<name>`, `NAME`, `...`: a pattern for the reader, not a command to check."""
    return bool(re.search(r"<|\.\.\.|…|^[A-Z][A-Z_]+$", word))


def _commands() -> list[tuple[str, str, list[str]]]:
    found = []
    for page in PAGES:
        text = page.read_text()
        for command in _fenced_commands(text) + _inline_commands(text):
            if "$(" in command:  # a shell snippet building a value, not a visprompt command
                continue
            for words in _split(command):
                if any(map(_placeholder, words)):  # `<project>/src`, `--config FILE`, ...
                    continue
                found.append((page.relative_to(REPO).as_posix(), command, _words(words)))
    return found


COMMANDS = _commands()


def _kedro_runs() -> list[tuple[str, str, list[str]]]:
    runs = {}
    for page, command, words in COMMANDS:
        if words[:2] == ["kedro", "run"]:
            runs.setdefault(tuple(words), (page, command, words))
    return list(runs.values())


def test_the_pages_show_commands() -> None:
    pages = {page for page, _, _ in COMMANDS}
    assert "README.md" in pages
    assert len(_kedro_runs()) >= 10


@pytest.mark.parametrize(("page", "command", "words"), _kedro_runs(), ids=lambda v: str(v)[:70])
def test_kedro_run_commands_pass_the_preflight(
    page: str, command: str, words: list[str], monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(REPO)  # `--config pipelines/x.yml` is relative to the project
    try:
        _preflight(words[2:])
    except (click.ClickException, ConfigError) as error:
        if "sources.imagefolder.root" not in str(error):
            pytest.fail(f"{page}: `{command}` is refused: {error}")
        # the user's own image folder (README: "your own images"): two classes stand in
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            Image.new("RGB", (8, 8)).save(tmp_path / name / "0.png")
        try:
            _preflight(words[2:], str(tmp_path))
        except (click.ClickException, ConfigError) as again:
            pytest.fail(f"{page}: `{command}` is refused: {again}")


def _preflight(args: list[str], image_root: str | None = None) -> None:
    ctx = kedro_run.run.make_context("run", args)
    options = dict(ctx.params)
    if image_root:  # as `--params data_ingestion.sources.imagefolder.root=...` would set it
        params = copy.deepcopy(options.get("params") or {})
        ingestion = params.setdefault("data_ingestion", {})
        ingestion.setdefault("sources", {}).setdefault("imagefolder", {})["root"] = image_root
        options["params"] = params
    kedro_run.check_pipelines(experiment.requested_pipelines(options))
    kedro_run.preflight(options)


def _make_targets() -> set[str]:
    makefile = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z-]*):", makefile, flags=re.M))


def test_make_commands_name_targets() -> None:
    targets = _make_targets()
    for page, command, words in COMMANDS:
        if words[:1] == ["make"]:
            for target in [w for w in words[1:] if "=" not in w]:
                assert target in targets, f"{page}: `{command}`: no Makefile target {target}"


_HELP_EACH = """
import runpy, sys
failed = []
for line in sys.stdin.read().splitlines():
    module, *sub = line.split()
    sys.argv = [module, *sub, "--help"]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as done:
        if done.code not in (0, None):
            failed.append(line)
print("FAILED:" + "|".join(failed))
"""


def test_python_modules_and_subcommands_exist() -> None:
    """`python -m visprompt.X sub` answers `--help` (one process for all: mlflow loads once)."""
    wanted = {}
    for page, command, words in COMMANDS:
        if words[:2] == ["python", "-m"] and words[2].startswith("visprompt"):
            module, sub = words[2], [w for w in words[3:4] if not w.startswith("-")]
            assert importlib.util.find_spec(module), f"{page}: `{command}`: no module {module}"
            wanted.setdefault(" ".join([module, *sub]), f"{page}: `{command}`")
    assert wanted
    done = subprocess.run(
        [sys.executable, "-c", _HELP_EACH],
        input="\n".join(wanted),
        capture_output=True,
        text=True,
    )
    failed = done.stdout.rsplit("FAILED:", 1)[-1].strip()
    assert done.returncode == 0, done.stderr[-2000:]
    assert not failed, [wanted[line] for line in failed.split("|")]


def _repo_paths(text: str) -> set[str]:
    spans = re.findall(r"`([^`\n]+)`", text) + _fenced_commands(text)
    paths = set()
    for span in spans:
        for word in re.split(r"[\s=,]+", span):
            word = word.strip("()[]'\":;")
            local = word.startswith("conf/local/")  # the user's own, git-ignored
            if word.startswith(TRACKED) and not local and not re.search(r"[<*{$…]|\.\.\.", word):
                paths.add(word.split(":")[0].rstrip("."))  # `file.yml:key`, `test.py::case`
    return paths


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_repository_paths_and_links_exist(page: Path) -> None:
    text = page.read_text()
    missing = [p for p in _repo_paths(text) if not (REPO / p).exists()]
    assert not missing, f"{page.relative_to(REPO)} names paths that do not exist: {missing}"
    for target in re.findall(r"\]\(([^)#\s]+)", text):
        assert not target.startswith(("http:", "https:")), f"{page}: external link {target}"
        resolved = (page.parent / target).resolve()
        assert resolved.is_relative_to(REPO), f"{page}: link {target} leaves the repository"
        assert resolved.exists(), f"{page}: link {target} reaches nothing"
