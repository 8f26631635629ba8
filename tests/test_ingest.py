"""Every input kind is recognised; every broken input gets one clear line naming the file."""

from __future__ import annotations

import pickle
import re
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import write_case_bundle
from vehiclust.collection import detect_input, ingest
from vehiclust.collection.ingest import IngestSettings
from vehiclust.errors import InputError
from vehiclust.runfolder import RunFolder


@pytest.fixture(scope="module")
def photo_paths(photo_folder) -> list[str]:
    return sorted(p.relative_to(photo_folder).as_posix() for p in photo_folder.rglob("*.jpg"))


def bundle_paths(paths: list[str]) -> list[str]:
    """The case's path shape: veriwild/<part>/<vehicle id>/<image id>.jpg."""
    return [f"veriwild/1/{p}" for p in paths]


def test_image_folder_with_vehicle_info(tmp_path, photo_folder, photo_paths):
    root = tmp_path / "images"
    shutil.copytree(photo_folder, root)
    first = photo_paths[0]
    vehicle, image = first.split("/")
    (root / "vehicle_info.txt").write_text(
        "id/image;Camera ID;Time;Model;Type;Color\n"
        f"{vehicle}/{Path(image).stem};7;2018-03-11 11:25:53;Jeep;SUV;white\n")
    table = ingest(root, RunFolder(tmp_path / "run"))
    assert table["path"].tolist() == photo_paths
    assert (table["error"] == "").all()
    assert table["vehicle_id"].iloc[0] == vehicle
    row = table.set_index("path").loc[first]
    assert (row["camera_id"], row["type"], row["color"]) == ("7", "SUV", "white")
    assert (table["width"] > 0).all() and table["content_hash"].str.len().eq(24).all()


@pytest.mark.parametrize("header", ["paths", "path"])
def test_case_bundle_unpacked(tmp_path, photo_folder, photo_paths, header):
    rng = np.random.default_rng(0)
    paths = [bundle_paths(photo_paths)[i] for i in rng.permutation(len(photo_paths))]
    assert paths != sorted(paths)  # else input order and sorting could not be told apart
    vdc_type = rng.normal(size=(len(paths), 512))  # float64, as some copies ship
    mdc_color = rng.normal(size=(len(paths), 128)).astype(np.float32)
    bundle = write_case_bundle(tmp_path / "case", paths, {"vdc_type": vdc_type, "mdc_color": mdc_color},
                               header=header)
    shutil.copytree(photo_folder, bundle / "raw_data" / "veriwild" / "1")
    run = RunFolder(tmp_path / "run")
    table = ingest(bundle, run)
    assert table["path"].tolist() == [p.replace("/", "\\") for p in paths]  # input order, as given
    assert (table["error"] == "").all()
    sizes = [Image.open(photo_folder / p.split("/", 2)[2]).size for p in paths]  # each row read its own file
    assert list(zip(table["width"], table["height"])) == sizes
    assert table["vehicle_id"].tolist() == [p.split("/")[-2] for p in paths]
    assert set(run.descriptor_names()) == {"vdc_type", "mdc_color"}
    stored = run.load_descriptor("vdc_type")
    assert stored.dtype == np.float32
    np.testing.assert_array_equal(stored, vdc_type.astype(np.float32))  # row i is the pickle's row i
    np.testing.assert_array_equal(run.load_descriptor("mdc_color"), mdc_color)


def test_case_bundle_images_in_zip_and_transport_csv(tmp_path, photo_folder, photo_paths):
    paths = bundle_paths(photo_paths)
    bundle = write_case_bundle(tmp_path / "case", paths, {"osnet": np.ones((len(paths), 512))})
    (bundle / "row_data").mkdir()
    with zipfile.ZipFile(bundle / "row_data" / "veriwild.zip", "w") as zf:
        for rel in photo_paths:
            zf.write(photo_folder / rel, f"veriwild/1/{rel}")
    pd.DataFrame({"path": [p.replace("/", "\\") for p in paths], "car_id": 1, "width": 1, "height": 1,
                  "brisque": np.arange(len(paths), dtype=float)}).to_csv(bundle / "transport_dataset.csv", index=False)
    table = ingest(bundle, RunFolder(tmp_path / "run"))
    assert table["location"].str.startswith("zip:").all()
    assert (table["error"] == "").all() and (table["width"] > 1).all()  # headers win over the csv
    assert table["brisque"].tolist() == list(range(len(paths)))


def test_case_bundle_without_images(tmp_path, photo_paths):
    paths = bundle_paths(photo_paths)
    bundle = write_case_bundle(tmp_path / "case", paths, {"osnet": np.ones((len(paths), 8))})
    spec = detect_input(bundle)
    assert spec.kind == "case_bundle" and not spec.has_images
    assert "missing" in spec.notes[0]
    table = ingest(bundle, RunFolder(tmp_path / "run"))
    assert (table["error"] == "").all() and (table["location"] == "").all()


def write_descriptor_file(path: Path, matrix: np.ndarray, keys: list[str] | None, form: str) -> Path:
    if form == "npy":
        np.save(path, matrix)
    elif form == "pickle":
        with open(path, "wb") as fh:
            pickle.dump(matrix if keys is None else pd.DataFrame(matrix).assign(path=keys), fh)
    elif form in ("parquet_wide", "csv_wide"):
        frame = pd.DataFrame(matrix, columns=[f"f{i}" for i in range(matrix.shape[1])])
        if keys is not None:
            frame.insert(0, "path", keys)
        frame.to_parquet(path) if form == "parquet_wide" else frame.to_csv(path, index=False)
    elif form in ("parquet_list", "csv_list"):
        frame = pd.DataFrame({"path": keys, "vector": [list(map(float, r)) for r in matrix]})
        frame.to_parquet(path) if form == "parquet_list" else frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("form, suffix, keyed", [
    ("npy", ".npy", False), ("pickle", ".pickle", False), ("pickle", ".pickle", True),
    ("parquet_wide", ".parquet", True), ("csv_wide", ".csv", False), ("csv_wide", ".csv", True),
    ("parquet_list", ".parquet", True), ("csv_list", ".csv", True),
])
def test_descriptor_files_by_order_and_by_path(tmp_path, photo_folder, photo_paths, form, suffix, keyed):
    rng = np.random.default_rng(1)
    matrix = rng.normal(size=(len(photo_paths), 6)).astype(np.float32)
    order = rng.permutation(len(photo_paths)) if keyed else np.arange(len(photo_paths))
    keys = [str(photo_folder / photo_paths[i]) for i in order] if keyed else None  # absolute paths
    path = write_descriptor_file(tmp_path / f"feat{suffix}", matrix[order], keys, form)
    run = RunFolder(tmp_path / "run")
    ingest(photo_folder, run, [path], IngestSettings(trust_pickles=keyed))  # a pickled DataFrame needs trust
    stored = np.asarray(run.load_descriptor("feat"))
    np.testing.assert_allclose(stored, matrix, rtol=1e-6)  # realigned to the collection's order


def test_descriptors_without_images(tmp_path):
    folder = tmp_path / "vectors"
    folder.mkdir()
    np.save(folder / "a.npy", np.random.default_rng(0).normal(size=(50, 4)))
    np.save(folder / "b.npy", np.random.default_rng(1).normal(size=(50, 3)))
    run = RunFolder(tmp_path / "run")
    table = ingest(folder, run)
    assert len(table) == 50 and table["path"].iloc[0] == "row_0000000"
    assert run.descriptor_names() == ["a", "b"]


def expect_input_error(match: str, fn, *args):
    with pytest.raises(InputError, match=match) as info:
        fn(*args)
    message = str(info.value)
    assert "\n" not in message
    return message


def expect_skipped(match: str, images: Path, run: RunFolder, bad: Path, good: Path | None = None,
                   settings: IngestSettings = IngestSettings()) -> str:
    """Ingest images with one bad descriptor file (and maybe a good one): the bad file is skipped
    with one line naming it, every image and the good descriptor are kept."""
    table = ingest(images, run, [bad] + ([good] if good else []), settings)
    (message,) = run.stage_record("ingest")["skipped_descriptor_files"]
    assert re.search(match, message) and str(bad) in message and "\n" not in message
    assert len(table) == sum(1 for _ in images.rglob("*.jpg")) and (table["error"] == "").all()
    assert run.descriptor_names() == ([good.stem] if good else [])
    return message


def test_row_count_mismatch(tmp_path, photo_folder, photo_paths):
    path = tmp_path / "short.npy"
    np.save(path, np.zeros((len(photo_paths) - 1, 4)))
    good = tmp_path / "good.npy"
    np.save(good, np.ones((len(photo_paths), 3)))
    expect_skipped("rows but the collection has", photo_folder, RunFolder(tmp_path / "r"), path, good)


def test_a_skipped_file_s_matrix_from_an_earlier_ingest_is_removed(tmp_path, photo_folder, photo_paths):
    path, run = tmp_path / "vec.npy", RunFolder(tmp_path / "r")
    np.save(path, np.ones((len(photo_paths), 4)))
    ingest(photo_folder, run, [path])
    assert run.descriptor_names() == ["vec"]
    np.save(path, np.ones((len(photo_paths) + 1, 4)))  # now it no longer matches the images
    expect_skipped("rows but the collection has", photo_folder, run, path)
    assert not run.descriptor_path("vec").exists()


def test_a_bad_descriptor_file_is_an_error_when_nothing_else_is_left(tmp_path):
    path = tmp_path / "broken.pickle"
    path.write_bytes(b"\x80\x04not really a pickle")
    expect_input_error("cannot read as a descriptor file", ingest, path, RunFolder(tmp_path / "r"))


def test_nan_rows_skip_the_file_unless_allowed(tmp_path, photo_folder, photo_paths):
    matrix = np.ones((len(photo_paths), 4))
    matrix[3, 1] = np.nan
    matrix[5, 0] = np.inf
    path = tmp_path / "nan.npy"
    np.save(path, matrix)
    message = expect_skipped("2 rows contain NaN or inf", photo_folder, RunFolder(tmp_path / "r"), path)
    assert "3, 5" in message and "--allow-invalid-rows" in message
    run = RunFolder(tmp_path / "r2")
    ingest(photo_folder, run, [path], IngestSettings(allow_invalid_rows=True))
    assert run.invalid_rows("nan") == {3: "NaN or inf in the descriptor file", 5: "NaN or inf in the descriptor file"}
    assert np.isfinite(run.load_descriptor("nan")).all()


@pytest.mark.parametrize("array, match", [
    (np.zeros((4, 3, 2)), "expected a 2-D matrix"),
    (np.zeros(10), "a 1-D array of 10 values"),
    (np.zeros((0, 5)), "empty matrix"),
])
def test_wrong_dimension(tmp_path, array, match):
    path = tmp_path / "bad.npy"
    np.save(path, array)
    assert str(path) in expect_input_error(match, ingest, path, RunFolder(tmp_path / "r"))


def test_keyed_file_missing_images(tmp_path, photo_folder, photo_paths):
    frame = pd.DataFrame({"path": photo_paths[:-2], "x": 1.0, "y": 2.0})
    path = tmp_path / "partial.csv"
    frame.to_csv(path, index=False)
    expect_skipped("no vector for 2 of", photo_folder, RunFolder(tmp_path / "r"), path)


def test_empty_folder_and_missing_input(tmp_path):
    (tmp_path / "empty").mkdir()
    expect_input_error("empty input", ingest, tmp_path / "empty", RunFolder(tmp_path / "r"))
    expect_input_error("input not found", ingest, tmp_path / "nope", RunFolder(tmp_path / "r"))


def test_unparseable_descriptor_file(tmp_path, photo_folder):
    path = tmp_path / "broken.pickle"
    path.write_bytes(b"\x80\x04not really a pickle")
    expect_skipped("cannot read as a descriptor file", photo_folder, RunFolder(tmp_path / "r"), path)


def test_ingest_is_skipped_when_nothing_changed(tmp_path, photo_folder):
    run = RunFolder(tmp_path / "run")
    ingest(photo_folder, run)
    first = run.stage_record("ingest")["finished"], run.collection_path.stat().st_mtime_ns
    ingest(photo_folder, run)
    assert (run.stage_record("ingest")["finished"], run.collection_path.stat().st_mtime_ns) == first


def test_nan_rows_of_a_file_matched_by_path_are_named_by_collection_row(tmp_path, photo_folder, photo_paths):
    rng = np.random.default_rng(2)
    matrix = rng.normal(size=(len(photo_paths), 4))
    matrix[7, 2] = np.nan  # the collection's row 7
    order = rng.permutation(len(photo_paths))
    keys = [str(photo_folder / photo_paths[i]) for i in order]
    path = write_descriptor_file(tmp_path / "keyed.parquet", matrix[order], keys, "parquet_wide")
    run = RunFolder(tmp_path / "run")
    ingest(photo_folder, run, [path], IngestSettings(allow_invalid_rows=True))
    assert run.invalid_rows("keyed") == {7: "NaN or inf in the descriptor file"}
    np.testing.assert_allclose(np.delete(run.load_descriptor("keyed"), 7, 0), np.delete(matrix, 7, 0), rtol=1e-6)


def test_one_descriptor_file_s_values_are_in_memory_at_a_time(tmp_path, monkeypatch):
    """The case's four pickles are 6.2 GB at float32 together: each is moved to a memory-mapped
    file before the next is read, so only one is ever held."""
    import weakref

    ingest_module = sys.modules["vehiclust.collection.ingest"]  # the package exports the function

    folder = tmp_path / "vectors"
    folder.mkdir()
    for i, width in enumerate((5, 3, 4)):
        with open(folder / f"d{i}.pickle", "wb") as fh:
            pickle.dump(np.random.default_rng(i).normal(size=(40, width)), fh)
    alive, most = [], []
    read = ingest_module.load_descriptor_file

    def counting(*args, **kwargs):
        most.append(sum(ref() is not None for ref in alive))
        loaded = read(*args, **kwargs)
        alive.append(weakref.ref(loaded.matrix))
        return loaded

    monkeypatch.setattr(ingest_module, "load_descriptor_file", counting)
    run = RunFolder(tmp_path / "run")
    ingest(folder, run)
    assert most == [0, 0, 0]
    assert run.descriptor_names() == ["d0", "d1", "d2"]
    np.testing.assert_allclose(run.load_descriptor("d1"), np.random.default_rng(1).normal(size=(40, 3)), rtol=1e-6)
    assert run.descriptor_meta("d1")["source_dtype"] == "float64"
    assert not [p.name for p in run.descriptor_path("d0").parent.iterdir() if p.suffix == ".tmp"]


def test_a_matrix_stored_as_float16_is_checked_on_every_row(tmp_path, monkeypatch):
    ingest_module = sys.modules["vehiclust.collection.ingest"]  # the package exports the function

    monkeypatch.setattr(ingest_module, "FLOAT16_ABOVE_BYTES", 1)  # every matrix counts as big
    folder = tmp_path / "vectors"
    folder.mkdir()
    small = np.ones((10_000, 4), np.float32)
    np.save(folder / "fits.npy", small)
    beyond = small.copy()
    beyond[1, 0] = 70_000.0  # beyond float16 (65504), on a row a sample of every other row misses
    np.save(folder / "beyond.npy", beyond)
    run = RunFolder(tmp_path / "run")
    ingest(folder, run)
    assert run.load_descriptor("fits").dtype == np.float16
    stored = run.load_descriptor("beyond")
    assert stored.dtype == np.float32 and stored[1, 0] == 70_000.0
