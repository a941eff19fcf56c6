"""Each validation rule on real Great Expectations runs: what passes, what fails and how
the failure names the files (or classes) and the fix."""

import pandas as pd
import pytest
from image_kit import image_bytes, write

from visprompt.data.ingest import ingest
from visprompt.data.manifest import content_hash
from visprompt.data.sources import load_source
from visprompt.data.validation import FIXES, failure_message, validate_manifest

CONFIG = {
    "required_columns": ["path", "label", "split", "sha256", "width", "height", "mode", "bytes"],
    "non_null_columns": ["path", "label", "split"],
    "splits": ["train", "val", "test"],
    "min_train_images_per_class": 2,
    "width": {"min": 8, "max": 64},
    "height": {"min": 8, "max": 64},
}


def _failed(report) -> dict[str, list[str]]:
    """Rule -> sorted offending items, over all of the rule's failing expectations."""
    failed: dict[str, list[str]] = {}
    for failure in report["failures"]:
        failed.setdefault(failure["rule"], []).extend(i["item"] for i in failure["items"])
    return {rule: sorted(items) for rule, items in failed.items()}


@pytest.fixture(scope="module")
def bad_report(tmp_path_factory):
    """One folder with every bad input, split by folder so duplicates can cross splits."""
    root = tmp_path_factory.mktemp("bad")
    for i in range(3):
        for label in ("cats", "dogs"):
            write(root / "train" / label / f"ok{i}.png", image_bytes(seed=hash(label) % 50 + i))
    write(root / "test" / "cats" / "ok.png", image_bytes(seed=77))
    write(root / "train" / "cats" / "dup.png", image_bytes(seed=99))
    write(root / "test" / "cats" / "dup_copy.png", image_bytes(seed=99))  # same bytes
    write(root / "train" / "cats" / "broken.jpg", b"not a jpeg")
    write(root / "train" / "cats" / "empty.png", b"")
    write(root / "train" / "dogs" / "tiny.png", image_bytes(size=(1, 1)))
    write(root / "train" / "dogs" / "huge.png", image_bytes(size=(100, 20)))
    (root / "train" / "birds").mkdir()
    source = load_source("imagefolder", {"root": str(root)})
    manifest, _ = ingest(source, 8, {"train": 0.8, "val": 0.2}, 0, tmp_path_factory.mktemp("out"))
    good = manifest[manifest["error"].isna()].iloc[0].to_dict()
    for path, change in (("x.png", {"label": "fox"}), ("y.png", {"split": "dev"})):
        manifest.loc[len(manifest)] = {**good, "path": path, "sha256": path * 8, **change}
    report, docs = validate_manifest(manifest, source.classes, CONFIG)
    return report, docs


def test_a_clean_dataset_passes(tmp_path):
    source = load_source("synthetic", {"num_classes": 3, "num_images": 30, "seed": 1})
    manifest, _ = ingest(source, 8, {"train": 0.6, "val": 0.2, "test": 0.2}, 0, tmp_path)
    report, docs = validate_manifest(manifest, source.classes, CONFIG)
    assert report["success"] and report["failures"] == []
    assert set(report["rules"]) == set(FIXES)
    assert "index.html" in docs and any(p.startswith("validations/") for p in docs)


@pytest.mark.parametrize(
    "rule, items",
    [
        ("decodable", ["train/cats/broken.jpg", "train/cats/empty.png"]),
        ("non_empty_file", ["train/cats/empty.png"]),
        ("no_leakage", ["test/cats/dup_copy.png", "train/cats/dup.png"]),
        ("width_bounds", ["train/dogs/huge.png", "train/dogs/tiny.png"]),
        ("height_bounds", ["train/dogs/tiny.png"]),
        ("label_in_classes", ["x.png"]),
        ("split_values", ["y.png"]),
        ("min_train_per_class", ["birds"]),  # the empty class folder
    ],
)
def test_each_rule_names_its_offenders(bad_report, rule, items):
    report, _ = bad_report
    assert not report["success"] and report["rules"][rule] is False
    assert _failed(report)[rule] == items


def test_rules_that_hold_pass_in_a_failing_run(bad_report):
    report, _ = bad_report
    assert report["rules"]["not_null"] and report["rules"]["columns_present"]


def test_message_names_rule_files_and_fix(bad_report):
    message = failure_message(bad_report[0])
    assert "rule decodable on 'error'" in message and "train/cats/broken.jpg" in message
    assert "cannot identify image file" in message
    assert FIXES["no_leakage"] in message and "test+train" in message


def test_missing_columns_and_nulls():
    manifest = pd.DataFrame(
        {"path": ["a.png", "b.png"], "label": ["x", None], "split": ["train", "train"]}
    )
    report, _ = validate_manifest(manifest, ["x"], {**CONFIG, "min_train_images_per_class": 1})
    failed = _failed(report)
    assert failed["columns_present"] == ["bytes", "height", "mode", "sha256", "width"]
    assert failed["not_null"] == ["b.png"]


def test_content_hash_ignores_names_and_order():
    frame = pd.DataFrame(
        {"path": ["a", "b"], "label": ["x", "y"], "split": ["train", "test"], "sha256": ["1", "2"]}
    )
    renamed = frame.assign(path=["c", "d"]).iloc[::-1]
    assert content_hash(frame, ["x", "y"]) == content_hash(renamed, ["x", "y"])
    assert content_hash(frame, ["x", "y"]) != content_hash(frame.assign(split="train"), ["x", "y"])


def _folder_manifest(root, tmp_path):
    source = load_source("imagefolder", {"root": str(root)})
    manifest, _ = ingest(source, 8, {"train": 0.5, "val": 0.25, "test": 0.25}, 0, tmp_path / "o")
    return manifest, source.classes


def test_an_empty_dataset_fails_with_a_rule_not_a_crash(tmp_path):
    (tmp_path / "images" / "cats").mkdir(parents=True)
    (tmp_path / "images" / "dogs").mkdir()
    manifest, classes = _folder_manifest(tmp_path / "images", tmp_path)
    report, _ = validate_manifest(manifest, classes, CONFIG)
    assert not report["success"] and report["rules"]["not_empty"] is False
    assert "rule not_empty: 1 bad: rows (0)" in failure_message(report)
    assert FIXES["not_empty"] in failure_message(report)


def test_the_same_image_under_two_labels_is_listed_in_pairs(tmp_path):
    root = tmp_path / "images"
    for i in range(4):
        write(root / "cats" / f"{i}.png", image_bytes(seed=i))
        write(root / "dogs" / f"{i}.png", image_bytes(seed=10 + i))
    write(root / "cats" / "twin.png", image_bytes(seed=99))
    write(root / "dogs" / "twin_copy.png", image_bytes(seed=99))
    manifest, classes = _folder_manifest(root, tmp_path)
    report, _ = validate_manifest(manifest, classes, CONFIG)
    assert report["rules"]["one_label_per_image"] is False
    (failure,) = [f for f in report["failures"] if f["rule"] == "one_label_per_image"]
    assert {(i["item"], i["value"]) for i in failure["items"]} == {
        ("cats/twin.png", "also dogs: dogs/twin_copy.png"),
        ("dogs/twin_copy.png", "also cats: cats/twin.png"),
    }
    assert report["rules"]["no_leakage"]  # copies share a split: only the label rule fires


def test_a_single_class_fails(tmp_path):
    for i in range(6):
        write(tmp_path / "images" / "cats" / f"{i}.png", image_bytes(seed=i))
    manifest, classes = _folder_manifest(tmp_path / "images", tmp_path)
    report, _ = validate_manifest(manifest, classes, CONFIG)
    assert report["rules"]["min_classes"] is False and _failed(report)["min_classes"] == ["rows"]
    assert all(ok for rule, ok in report["rules"].items() if rule != "min_classes")
