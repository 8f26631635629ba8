"""Tests of the demo collection generator (vehiclust.demo)."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from vehiclust.cache import exclusive
from vehiclust.demo import DemoCollection, build_demo, load_ground_truth, write_contact_sheet
from vehiclust.demo import build as demo_build
from vehiclust.demo import render as R
from vehiclust.demo import sources as S

KINDS = {
    "no_vehicle", "blurry", "motion_blur", "dark", "overexposed", "noisy", "small", "truncated",
    "duplicate", "near_duplicate",
}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[DemoCollection, pd.DataFrame]:
    out = tmp_path_factory.mktemp("demo_small")
    coll = build_demo(out, "small", seed=0)
    return coll, load_ground_truth(out)


def _md5(p: Path) -> str:
    return hashlib.md5(p.read_bytes()).hexdigest()


def _luma(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"), np.float32)


# ---------------------------------------------------------------------------------------------
# layout


def test_layout_and_vehicle_info(small):
    coll, gt = small
    root = coll.root
    assert root == coll.out_dir / "images"
    assert coll.vehicle_info == root / "vehicle_info.txt"
    assert coll.ground_truth == coll.out_dir / "ground_truth.csv"
    assert 950 <= coll.n_images <= 1050 and coll.n_images == len(gt)

    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.jpg"))
    assert len(files) == coll.n_images
    for f in files:
        assert re.fullmatch(r"\d{5}/\d{6}\.jpg", f), f
    assert sorted(gt.path) == files
    assert gt.image_id.is_unique

    lines = coll.vehicle_info.read_text().splitlines()
    assert lines[0] == "id/image;Camera ID;Time;Model;Type;Color"
    assert len(lines) == coll.n_images + 1
    seen = set()
    info_rows = {}
    for ln in lines[1:]:
        parts = ln.split(";")
        assert len(parts) == 6, ln
        ident, cam, t, model, typ, col = parts
        assert re.fullmatch(r"\d{5}/\d{6}", ident)
        assert cam.isdigit() and 1 <= int(cam) <= 174
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", t)
        assert model and typ and col
        seen.add(ident + ".jpg")
        info_rows[ident + ".jpg"] = (typ, col, int(cam), t)
    assert seen == set(files)
    g = gt.set_index("path")
    for p, (typ, col, cam, t) in info_rows.items():
        r = g.loc[p]
        assert (typ, col, cam, t) == (r.type, r.color, r.camera_id, r.time)
        assert (typ == "none") == (r.outlier_kind == "no_vehicle")
        assert (col == "none") == (r.outlier_kind == "no_vehicle")


def test_ground_truth_columns(small):
    coll, gt = small
    for c in ["path", "vehicle_id", "image_id", "type", "color", "camera_id", "time_of_day", "source",
              "is_outlier", "outlier_kind", "duplicate_of"]:
        assert c in gt.columns, c
    assert gt.is_outlier.dtype == bool
    assert (gt.is_outlier == (gt.outlier_kind != "")).all()
    assert set(gt.outlier_kind) - {""} <= KINDS
    assert set(gt.time_of_day) == {"day", "dusk", "night"}
    assert gt.vehicle_id.str.fullmatch(r"\d{5}").all()
    assert (gt.path == gt.vehicle_id + "/" + gt.image_id + ".jpg").all()
    assert gt.source.str.len().gt(0).all()
    assert (gt.duplicate_of != "").eq(gt.outlier_kind.isin(["duplicate", "near_duplicate"])).all()
    # every camera has one background region
    assert gt.groupby("camera_id").background.nunique().eq(1).all()
    assert gt.camera_id.nunique() == coll.n_cameras


# ---------------------------------------------------------------------------------------------
# identities and outliers


def test_identities_constant_type_colour_and_counts(small):
    coll, gt = small
    sizes = gt.groupby("vehicle_id").size()
    assert sizes.between(10, 30).all(), sizes.describe()
    assert coll.n_vehicles == len(sizes)
    veh = gt[gt.outlier_kind != "no_vehicle"]
    per = veh.groupby("vehicle_id").agg(types=("type", "nunique"), colours=("color", "nunique"),
                                        sources=("source", "nunique"))
    assert (per.types == 1).all() and (per.colours == 1).all() and (per.sources == 1).all()
    # many identities, several vehicle kinds and colours
    assert veh.type.nunique() >= 3 if coll.sources == "debian" else True
    assert veh.color.nunique() >= 5
    # each identity keeps clean images
    clean = gt[~gt.is_outlier].groupby("vehicle_id").size()
    assert clean.reindex(sizes.index, fill_value=0).ge(5).all()


def test_outlier_kinds_at_a_few_percent(small):
    coll, gt = small
    frac = gt.outlier_kind[gt.is_outlier].value_counts() / len(gt)
    assert set(frac.index) == KINDS
    assert frac.between(0.01, 0.05).all(), frac
    assert coll.outlier_counts == {k: int(v) for k, v in gt.outlier_kind[gt.is_outlier].value_counts().items()}


def test_exact_and_near_duplicates(small):
    coll, gt = small
    dups = gt[gt.outlier_kind == "duplicate"]
    assert len(dups) > 0
    for p, orig in zip(dups.path, dups.duplicate_of):
        assert p.split("/")[0] == orig.split("/")[0]  # same vehicle
        assert (coll.root / p).read_bytes() == (coll.root / orig).read_bytes()
        assert gt.set_index("path").loc[orig, "outlier_kind"] == ""
    near = gt[gt.outlier_kind == "near_duplicate"]
    assert len(near) > 0
    for p, orig in zip(near.path, near.duplicate_of):
        a, b = _luma(coll.root / p), _luma(coll.root / orig)
        assert (coll.root / p).read_bytes() != (coll.root / orig).read_bytes()
        assert a.shape == b.shape
        # equal up to a shift of at most 2 px and re-encoding noise
        h, w = a.shape
        best = min(
            np.abs(a[2:h - 2, 2:w - 2] - b[2 + dy:h - 2 + dy, 2 + dx:w - 2 + dx]).mean()
            for dy in range(-2, 3) for dx in range(-2, 3)
        )
        assert best < 4.0
    # no two images other than the marked duplicates are byte-identical
    digests = gt.path.map(lambda p: _md5(coll.root / p))
    for _, group in gt.groupby(digests):
        if len(group) > 1:
            assert (group.outlier_kind == "").sum() == 1
            assert (group.outlier_kind == "duplicate").sum() == len(group) - 1


def test_degradations_look_like_their_kind(small):
    coll, gt = small
    root = coll.root

    def stat(kind, f):
        return [f(root / p) for p in gt.path[gt.outlier_kind == kind]]

    sizes = stat("small", lambda p: Image.open(p).size)
    assert all(max(s) < 40 for s in sizes)
    clean = gt[~gt.is_outlier & (gt.time_of_day == "day")]
    assert min(Image.open(root / p).size[0] for p in clean.path) >= 100
    assert np.median(stat("dark", lambda p: _luma(p).mean())) < 20
    assert np.median(stat("overexposed", lambda p: _luma(p).mean())) > 190

    def sharpness(p):  # mean horizontal gradient at half resolution (less sensitive to noise)
        a = np.asarray(Image.open(p).convert("L").reduce(2), np.float32)
        return np.abs(np.diff(a, axis=1)).mean()

    day_clean = np.median([sharpness(root / p) for p in clean.path[:80]])
    assert np.median(stat("blurry", sharpness)) < 0.6 * day_clean
    assert np.median(stat("motion_blur", sharpness)) < 0.7 * day_clean
    assert np.median(stat("noisy", sharpness)) > 2.0 * day_clean


# ---------------------------------------------------------------------------------------------
# recolouring


def test_recolouring_gives_the_named_colour():
    src = S.load_sources()
    if src.kind != "debian":
        pytest.skip("recolouring is checked on the Debian vehicle photographs")
    rng = np.random.default_rng(0)
    checked = 0
    for cut in src.vehicles:
        if cut.meta.get("colour") is not None:
            continue
        model = R.prepare_vehicle(cut)
        body = model.paint > 0.8
        assert body.sum() > 0.3 * (model.rgba[..., 3] > 0.5).sum(), cut.name
        for colour in ("red", "blue", "white", "black", "yellow", "green"):
            for _ in range(3):
                out = R.recolour(model, R.identity_shade(colour, rng))
                mean = out[..., :3][body].mean(0)
                h, s, v = R.rgb_to_hsv(mean[None])[0]
                hue = h * 360
                if colour == "red":
                    assert (hue < 15 or hue > 345) and s > 0.6 and 0.35 < v < 0.9, (cut.name, mean)
                elif colour == "blue":
                    assert 200 < hue < 250 and s > 0.6, (cut.name, mean)
                elif colour == "yellow":
                    assert 40 < hue < 60 and s > 0.6 and v > 0.6, (cut.name, mean)
                elif colour == "green":
                    assert 100 < hue < 160 and s > 0.5, (cut.name, mean)
                elif colour == "white":
                    assert v > 0.75 and s < 0.08, (cut.name, mean)
                elif colour == "black":
                    assert v < 0.2, (cut.name, mean)
        checked += 1
    assert checked >= 4


def test_fixed_colour_vehicles_keep_their_colour(small):
    coll, gt = small
    if coll.sources != "debian":
        pytest.skip("Debian photographs only")
    veh = gt[gt.outlier_kind != "no_vehicle"]
    fire = veh[veh.source.str.endswith("firetruck.png")]
    assert set(fire.color) <= {"red"}
    garbage = veh[veh.source.str.endswith("garbagetruck.png")]
    assert set(garbage.color) <= {"white"}


# ---------------------------------------------------------------------------------------------
# determinism, skipping, rebuilding


@pytest.mark.slow
def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = build_demo(tmp_path / "a", 80, seed=3)
    b = build_demo(tmp_path / "b", 80, seed=3)
    c = build_demo(tmp_path / "c", 80, seed=4)
    ga, gb, gc = (load_ground_truth(x.out_dir) for x in (a, b, c))
    pd.testing.assert_frame_equal(ga, gb)
    for p in ga.path[::7]:
        assert (a.root / p).read_bytes() == (b.root / p).read_bytes()
    assert a.vehicle_info.read_bytes() == b.vehicle_info.read_bytes()
    assert not ga[["path", "type", "color", "camera_id", "time"]].equals(gc[["path", "type", "color", "camera_id", "time"]])


@pytest.mark.slow
def test_pooled_and_serial_builds_are_identical(tmp_path, small, monkeypatch):
    """The pooled "small" build and a one-process build of it write the same bytes."""
    coll, gt = small
    monkeypatch.setattr(demo_build.os, "cpu_count", lambda: 1)
    again = build_demo(tmp_path / "again", "small", seed=0)
    g2 = load_ground_truth(again.out_dir)
    pd.testing.assert_frame_equal(gt, g2)
    for p in gt.path[::37]:
        assert (coll.root / p).read_bytes() == (again.root / p).read_bytes()


def test_complete_build_is_not_rebuilt(small, monkeypatch):
    coll, gt = small
    before = {p: (coll.root / p).stat().st_mtime_ns for p in gt.path}

    def no_sources(*a, **k):  # rebuilding starts by loading the sources: fail if it does
        raise AssertionError("a complete build must not be rebuilt")

    monkeypatch.setattr(demo_build, "load_sources", no_sources)
    again = build_demo(coll.out_dir, "small", seed=0)
    assert again == coll
    assert {p: (coll.root / p).stat().st_mtime_ns for p in before} == before


def _blocked_on_a_lock(pid: int, timeout: float = 60.0) -> bool:
    """Whether process ``pid`` waits for a flock (Linux lists waiters in /proc/locks with '->')."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        waiting = [line.split() for line in Path("/proc/locks").read_text().splitlines() if "->" in line]
        if any(str(pid) in fields for fields in waiting):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="needs Linux's /proc/locks")
def test_a_second_build_of_one_folder_waits_and_takes_the_first_one_s(tmp_path):
    out = tmp_path / "d"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with exclusive(out / demo_build.LOCK):  # a first build in progress
        second = subprocess.Popen([sys.executable, "-c", "import sys; from vehiclust.demo import build_demo; "
                                   "build_demo(sys.argv[1], 40, seed=5)", str(out)], env=env)
        assert _blocked_on_a_lock(second.pid)
        demo_build._build(out, 40, 40, 5, None, None)
        finished = (out / demo_build.MARKER).read_bytes()
    assert second.wait(timeout=120) == 0
    assert (out / demo_build.MARKER).read_bytes() == finished  # reused, not cleared and rebuilt
    assert len(list((out / "images").rglob("*.jpg"))) == 40


@pytest.mark.slow
def test_incomplete_or_different_build_is_rebuilt(tmp_path):
    out = tmp_path / "d"
    first = build_demo(out, 60, seed=1)
    marker = out / demo_build.MARKER
    assert marker.exists()
    # an interrupted build (no completion marker) is redone, stray files go
    marker.unlink()
    stray = first.root / "99999" / "000000.jpg"
    stray.parent.mkdir()
    stray.write_bytes(b"junk")
    again = build_demo(out, 60, seed=1)
    assert marker.exists() and not stray.exists()
    assert again.n_images == 60
    # another seed replaces the collection
    other = build_demo(out, 60, seed=2)
    assert other.seed == 2
    assert len(list(other.root.rglob("*.jpg"))) == 60


def test_sizes():
    assert demo_build.resolve_size("small") == 1000
    assert demo_build.resolve_size("default") == 5000
    assert demo_build.resolve_size(123) == 123
    assert demo_build.resolve_size("250") == 250
    with pytest.raises(ValueError):
        demo_build.resolve_size("huge")
    with pytest.raises(ValueError):
        demo_build.resolve_size(3)


# ---------------------------------------------------------------------------------------------
# fallback and contact sheet


def test_fallback_collection_when_apt_is_unavailable(tmp_path, monkeypatch):
    def no_apt(*a, **k):
        raise S.SourceUnavailable("no apt here")

    monkeypatch.setattr(S, "ensure_cache", no_apt)
    monkeypatch.delenv("VEHICLUST_DEMO_SOURCES", raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        coll = build_demo(tmp_path / "fb", 120, seed=0)
    assert any("scikit-image" in str(w.message) for w in caught)
    assert coll.sources == "skimage"
    gt = load_ground_truth(coll.out_dir)
    assert len(gt) == 120 == len(list(coll.root.rglob("*.jpg")))
    assert gt.groupby("vehicle_id").size().between(10, 30).all()
    assert gt.source.str.startswith("scikit-image:").all()
    lines = coll.vehicle_info.read_text().splitlines()
    assert lines[0] == "id/image;Camera ID;Time;Model;Type;Color" and len(lines) == 121


def test_contact_sheet(small, tmp_path):
    coll, gt = small
    out = write_contact_sheet([coll.root / p for p in gt.path], tmp_path / "sheet.jpg", n=64, seed=0)
    im = Image.open(out)
    assert im.format == "JPEG"
    assert im.size[0] == im.size[1] and im.size[0] >= 8 * 100
    again = write_contact_sheet([coll.root / p for p in gt.path], tmp_path / "sheet2.jpg", n=64, seed=0)
    assert out.read_bytes() == again.read_bytes()
