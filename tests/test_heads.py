"""A trained head learns labels it can see, measured on vehicles it never saw."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import real_photos, variants
from vehiclust.collection import ingest
from vehiclust.describe import describe
from vehiclust.describe.heads import HeadSettings, train_head
from vehiclust.errors import VehiclustError
from vehiclust.runfolder import RunFolder


@pytest.fixture(scope="module")
def labelled_run(tmp_path_factory):
    """Several 'vehicles' per photograph; the label is the photograph's subject."""
    root = tmp_path_factory.mktemp("labelled") / "images"
    rng = np.random.default_rng(0)
    lines = ["id/image;Camera ID;Time;Model;Type;Color"]
    vehicle = 0
    for subject, photo in sorted(real_photos().items()):
        for _ in range(5):
            vehicle += 1
            folder = root / f"{vehicle:05d}"
            folder.mkdir(parents=True)
            for j, image in enumerate(variants(photo, 4, rng)):
                image.save(folder / f"{vehicle * 10 + j:06d}.jpg")
                lines.append(f"{vehicle:05d}/{vehicle * 10 + j:06d};1;2020-01-01 10:00:00;m;{subject};none")
    (root / "vehicle_info.txt").write_text("\n".join(lines) + "\n")
    run = RunFolder(root.parent / "run")
    ingest(root, run)
    describe(run, ["color_hist"])
    return run


def test_head_beats_the_majority_class_on_unseen_vehicles(labelled_run):
    result = train_head(labelled_run, "color_hist", "type", settings=HeadSettings(epochs=60))
    assert result.holdout_rows > 0 and result.train_rows > result.holdout_rows
    assert result.holdout_accuracy > result.majority_accuracy + 0.3
    stored = labelled_run.load_descriptor("head_type")
    assert stored.shape == (len(labelled_run.load_collection()), 128)
    meta = labelled_run.descriptor_meta("head_type")
    assert meta["split"] == "by vehicle_id" and meta["backbone"] == "color_hist"


def test_holdout_is_whole_vehicles(labelled_run):
    from vehiclust.describe.heads import _split

    table = labelled_run.load_collection()
    rows = table["row"].to_numpy()
    held = _split(table, rows, HeadSettings())
    vehicles = table["vehicle_id"].to_numpy()
    assert held.any() and not set(vehicles[held]) & set(vehicles[~held])


def test_missing_label_column_is_a_clear_error(labelled_run):
    with pytest.raises(VehiclustError, match="no column 'brand'"):
        train_head(labelled_run, "color_hist", "brand")


def test_single_class_label_is_refused(labelled_run):
    with pytest.raises(VehiclustError, match="distinct label"):
        train_head(labelled_run, "color_hist", "color")
