"""The multi-prompt server: versions of several methods on one backbone in one process
(127.0.0.1, a real MLflow store), a mixed batch answered per version exactly as each version
served alone, an alias moved while requests run, bodies over the limit refused unread, and
PGN's client-server mode against the plain backbone's route."""

from __future__ import annotations

import contextlib
import http.client
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from e2e.e2e_kit import free_port, start_server, stop_group
from PIL import Image
from registry_kit import BACKBONES, example_images, kit_backbone
from serving_kit import KIND, get_json, images_payload, post, register_quickly, trained_version

from visprompt import methods
from visprompt.backbones import data_config
from visprompt.cli import main as cli_main
from visprompt.data.transforms import to_model_input
from visprompt.methods.pgn.inversion import PromptClient, PromptServer, to_uint8
from visprompt.pgn_invert import remote_logits
from visprompt.registry.integrity import encode_png
from visprompt.serving.__main__ import main as serving_main
from visprompt.serving.app import Batcher, Part
from visprompt.serving.shared import shared_logits
from visprompt.serving.versions import Backbones, VersionRef

#: (registered name, method, options) in registration order: digits/1..3, then one each.
VERSIONS = [
    ("digits", "linear_probe", {}),
    ("digits", "vp", {}),
    ("digits", "ap", {"layer": "blocks.0"}),
    ("tokens", "vpt", {"variant": "deep", "num_prompts": 3}),
    ("pgn", "pgn", {"num_prompts": 4}),
    ("bias", "bias_tuning", {}),
]
SERVED = ["digits@champion", "digits/2", "digits/3", "tokens/1", "pgn/1", "bias/1"]
LIMIT = 200_000  # max_request_bytes of the test server


def test_shared_backbone_logits_equal_each_version_alone() -> None:
    backbone = kit_backbone(KIND)
    cfg = data_config(backbone)
    norm = {"mean": cfg["mean"], "std": cfg["std"]}
    options = [
        ("linear_probe", {}),
        ("vp", {}),
        ("vp", {"output": "first_k"}),
        ("adavipro", {}),
        ("ap", {"layer": "blocks.0"}),
        ("ap", {"layer": "blocks.1.norm1", "granularity": "channel"}),  # served folded in β
        ("vpt", {}),
        ("vpt", {"variant": "deep", "num_prompts": 3}),
        ("pgn", {"num_prompts": 4}),
    ]
    items, alone = [], []
    for seed, (method, opts) in enumerate(options):
        torch.manual_seed(seed)
        model = methods.build(method, backbone, num_classes=5, **opts).eval()
        with torch.no_grad():
            for param in model.trainable_parameters():
                param.add_(0.5 * torch.randn_like(param))
        images = torch.randn(3, 3, 32, 32)
        with torch.no_grad():
            alone.append(model.served(True, norm)(images))
        items.append((model.shared_form(True, norm), images))
    together = shared_logits(backbone, items)
    for (method, _), own, shared in zip(options, alone, together, strict=True):
        torch.testing.assert_close(shared, own, rtol=0, atol=1e-6, msg=method)
    assert len({tuple(t.argmax(-1).tolist()) for t in together}) > 1  # versions differ
    for own_weights in ("bias_tuning", "norm_tuning", "full_finetune"):  # and LoRA: served alone
        assert methods.build(own_weights, backbone, num_classes=5).shared_form() is None


@pytest.fixture(scope="module")
def server(project: Path) -> Iterator[dict]:
    """The versions registered in a real store and one multi-prompt server for all."""
    models = {}
    for seed, (name, method, options) in enumerate(VERSIONS, start=1):
        artifact, package, model = trained_version(project, seed, method, **options)
        version = register_quickly(project, name, artifact, package, model)
        models[f"{name}/{version}"] = (model, package, artifact)
    client = mlflow.MlflowClient()
    client.set_registered_model_alias("digits", "champion", "1")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "visprompt.serving", "--port", str(port)]
    command += ["--poll-s", "0.5", "--max-request-bytes", str(LIMIT)]
    command += [arg for ref in SERVED for arg in ("--model", ref)]
    process = start_server(command, f"{base}/ping", project / "multi_server.log")
    try:
        yield {"base": base, "models": models, "process": process}
    finally:
        stop_group(process)


def _alone(ref: str, images: list[str]) -> pd.DataFrame:
    """The single-version path: the version's pyfunc model, as `mlflow models serve` loads it."""
    return mlflow.pyfunc.load_model(f"models:/{ref}").predict(pd.DataFrame({"image": images}))


@pytest.mark.slow
def test_a_mixed_batch_gets_each_versions_own_prediction(server) -> None:
    base = server["base"]
    listing = get_json(f"{base}/versions")
    assert len(listing["backbones"]) == 1  # six versions, one backbone in memory
    shared = {ref: v["shared_backbone"] for ref, v in listing["versions"].items()}
    assert shared == {ref: ref != "bias/1" for ref in SERVED}
    images = example_images(2 * len(SERVED), seed=5)
    names = [SERVED[i % len(SERVED)] for i in range(len(images))]
    status, answer = post(f"{base}/invocations", images_payload(images, names))
    assert status == 200, answer
    rows = answer["predictions"]
    encoded = [encode_png(image) for image in images]
    for ref in SERVED:
        mine = [i for i, name in enumerate(names) if name == ref]
        resolved = "digits/1" if ref == "digits@champion" else ref
        expected = _alone(resolved, [encoded[i] for i in mine])
        got = [rows[i] for i in mine]
        assert {(r["model"], r["version"]) for r in got} == {tuple(resolved.split("/"))}
        assert [r["label"] for r in got] == expected["label"].tolist(), ref
        # the same answer format: calibrated confidence, OOD flag (no detector: never flagged)
        assert [r["out_of_distribution"] for r in got] == expected["out_of_distribution"].tolist()
        np.testing.assert_allclose(
            [r["probabilities"] for r in got],
            np.stack(expected["probabilities"]),
            rtol=0,
            atol=1e-6,
            err_msg=ref,
        )
    # the route form names one version for the whole request
    status, routed = post(f"{base}/invocations/digits/3", images_payload(images[:2]))
    assert status == 200 and [r["version"] for r in routed["predictions"]] == ["3", "3"]
    one = {"model": "tokens/1", "dataframe_records": [{"image": encoded[0]}]}
    status, fielded = post(f"{base}/invocations", one)
    assert status == 200 and fielded["predictions"][0]["model"] == "tokens"
    status, missing = post(f"{base}/invocations/digits/9", images_payload(images[:1]))
    assert status == 404 and "digits/2" in missing["message"]


@pytest.mark.slow
def test_an_alias_move_is_picked_up_while_requests_run(server) -> None:
    base, payload = server["base"], images_payload(example_images(2, seed=8))
    seen: list[tuple[int, str]] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            status, answer = post(f"{base}/invocations/digits/champion", payload)
            seen.append((status, answer["predictions"][0]["version"] if status == 200 else ""))

    workers = [threading.Thread(target=load) for _ in range(3)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(1.0)
        mlflow.MlflowClient().set_registered_model_alias("digits", "champion", "2")
        deadline = time.monotonic() + 30
        while not seen or seen[-1][1] != "2":
            assert time.monotonic() < deadline, seen[-5:]
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
        mlflow.MlflowClient().set_registered_model_alias("digits", "champion", "1")
    assert {status for status, _ in seen} == {200}  # no request failed during the swap
    versions = [version for _, version in seen]
    assert versions[0] == "1" and versions[-1] == "2"
    # requests already decoded for version 1 may finish after the first answer of version 2
    # (more of them on a loaded machine): the move shows as 1s, then 2s to the end
    assert versions.index("2") > 0 and versions[-1] == "2"


def _raw_post(base: str, headers: dict[str, str], body: bytes) -> tuple[int, dict]:
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.putrequest("POST", "/invocations/digits/2")
    for key, value in headers.items():
        connection.putheader(key, value)
    connection.endheaders()
    with contextlib.suppress(OSError):  # the server may answer and close before the body
        connection.send(body)
    response = connection.getresponse()
    answer = json.loads(response.read())
    connection.close()
    return response.status, answer


@pytest.mark.slow
def test_a_body_over_the_limit_is_refused_before_it_is_read(server) -> None:
    base = server["base"]
    # a declared 1 GB body: answered from the header alone, nothing of it sent
    status, answer = _raw_post(base, {"Content-Length": str(10**9)}, b"")
    assert status == 413 and "max_request_bytes=200,000" in answer["message"], answer
    # no Content-Length (chunked): read until it passes the limit, then refused
    chunk = b"x" * 65_536
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(5)) + b"0\r\n\r\n"
    status, answer = _raw_post(base, {"Transfer-Encoding": "chunked"}, chunked)
    assert status == 413 and "of at least" in answer["message"], answer
    status, answer = post(f"{base}/invocations/digits/2", images_payload(example_images(1)))
    assert status == 200 and server["process"].poll() is None


@pytest.mark.slow
def test_pgn_client_and_the_plain_backbone_predict_like_the_token_path(server) -> None:
    base = server["base"]
    model, package, _ = server["models"]["pgn/1"]
    (key,) = get_json(f"{base}/versions")["backbones"]
    pre = package["preprocessing"]
    uint8 = torch.from_numpy(example_images(16, seed=21)).permute(0, 3, 1, 2)
    rgb = to_model_input(uint8, 32, (0.0,) * 3, (1.0,) * 3)
    client = PromptClient.from_pgn(model, pre)
    remote = remote_logits(client, model.head, rgb, f"{base}/backbones/{key}/features")
    with torch.no_grad():
        local = PromptServer.from_pgn(model, pre)(to_uint8(client(rgb)))  # in one process
        token = model(to_model_input(to_uint8(rgb), 32, pre["mean"], pre["std"]))
    torch.testing.assert_close(remote, local, rtol=0, atol=1e-5)
    agreement = float((remote.argmax(-1) == token.argmax(-1)).float().mean())
    assert agreement >= 0.75, agreement
    status, answer = post(f"{base}/backbones/{key}/features", images_payload(example_images(1)))
    assert status == 200 and len(answer["features"][0]) == 64  # a plain 32 px image too
    tall = np.zeros((36, 32, 3), np.uint8)  # not on the 8 px patch grid
    status, answer = post(f"{base}/backbones/{key}/features", images_payload(tall[None]))
    assert status == 400 and "patch grid" in answer["message"]


@pytest.mark.slow
def test_pgn_invert_cli_classifies_through_the_plain_server(server, project, tmp_path, capsys):
    base = server["base"]
    model, package, artifact = server["models"]["pgn/1"]
    (key,) = get_json(f"{base}/versions")["backbones"]
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i, image in enumerate(example_images(3, seed=4)):
        Image.fromarray(image).save(inputs / f"{i}.png")
    name, kwargs = BACKBONES[KIND]
    weights = project / package["backbone"]["weights_path"]
    argv = ["pgn-invert", str(inputs), "--artifact", str(artifact)]
    argv += ["--backbone", name, "--weights", str(weights)]
    argv += ["--backbone-kwargs", json.dumps(kwargs), "--out", str(tmp_path / "out")]
    argv += ["--server", f"{base}/backbones/{key}/features"]
    assert cli_main(argv) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()[1:]]
    server_side = PromptServer.from_pgn(model)
    for line in lines:
        pixels = np.asarray(Image.open(line["image"]).convert("RGB"))
        with torch.no_grad():
            local = server_side(torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None])
        assert line["label"] == int(local.argmax(-1)[0])
    assert len(lines) == 3


def test_a_version_that_cannot_be_served_stops_the_start_naming_it(project, capsys) -> None:
    assert VersionRef.parse("digits@champion") == VersionRef("digits", alias="champion")
    assert str(VersionRef.parse("digits/3")) == "digits/3"
    with pytest.raises(ValueError, match="neither NAME@ALIAS"):
        VersionRef.parse("digits:3")
    assert serving_main(["--model", "no-such-model@champion", "--port", "1"]) == 2
    assert "cannot serve no-such-model@champion" in capsys.readouterr().err


def test_concurrent_requests_for_different_versions_share_one_backbone_call() -> None:
    backbone = kit_backbone(KIND)
    backbones = Backbones(load=lambda reference: backbone)
    backbones.get({"sha256": "kit"})
    forms = []
    for seed, method in enumerate(["linear_probe", "vp", "ap"]):
        torch.manual_seed(seed)
        options = {"layer": "blocks.0"} if method == "ap" else {}
        model = methods.build(method, backbone, num_classes=5, **options).eval()
        with torch.no_grad():
            for param in model.trainable_parameters():
                param.add_(0.5 * torch.randn_like(param))
        forms.append(model.shared_form())
        if method == "vp":
            vp_prompt = model.prompt
    forms.append(forms[1])  # a second request for the VP version: joined with the first
    images = [torch.randn(2 + i, 3, 32, 32) for i in range(len(forms))]
    calls, prompts = [], []
    backbone.blocks[0].register_forward_hook(lambda *_: calls.append(1))
    vp_prompt.register_forward_hook(lambda *_: prompts.append(1))
    batcher = Batcher(backbones)
    with backbones.in_use:  # the worker takes the first job, then waits for the backbone
        first = batcher.submit([Part("kit", images[0], forms[0])])
        while not batcher._jobs.empty():
            time.sleep(0.01)
        queued = zip(images[1:], forms[1:], strict=True)
        later = [batcher.submit([Part("kit", x, form)]) for x, form in queued]
    results = [first.result(timeout=60)[0]] + [f.result(timeout=60)[0] for f in later]
    assert len(calls) == 2  # the three requests queued meanwhile: one call for all
    assert len(prompts) == 1  # both VP requests prompted in one pass
    for got, form, x in zip(results, forms, images, strict=True):
        torch.testing.assert_close(got, shared_logits(backbone, [(form, x)])[0], rtol=0, atol=1e-6)
