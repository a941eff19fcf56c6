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
    manifest, _, _ = ingest(source, 8, {"train": 0.8, "val": 0.2}, 0)
    good = manifest[manifest["error"].isna()].iloc[0].to_dict()
    for path, change in (("x.png", {"label": "fox"}), ("y.png", {"split": "dev"})):
        manifest.loc[len(manifest)] = {**good, "path": path, "sha256": path * 8, **change}
    report, docs = validate_manifest(manifest, source.classes, CONFIG)
    return report, docs


def test_a_clean_dataset_passes():
    source = load_source("synthetic", {"num_classes": 3, "num_images": 30, "seed": 1})
    manifest, _, _ = ingest(source, 8, {"train": 0.6, "val": 0.2, "test": 0.2}, 0)
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
