"""Planning and writing the demo collection (see the package docstring for what it holds)."""

from __future__ import annotations

import json
import re
import multiprocessing as mp
import os
import shutil
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from vehiclust.cache import exclusive

from . import render as R
from .sources import SourceSet, load_sources

GENERATOR_VERSION = "1"
SIZES = {"small": 1000, "default": 5000}
MARKER = ".vehiclust-demo-complete.json"
LOCK = ".vehiclust-demo.lock"
GROUND_TRUTH = "ground_truth.csv"
VEHICLE_INFO_HEADER = "id/image;Camera ID;Time;Model;Type;Color"

# share of all images for each kind of outlier
OUTLIER_RATES: dict[str, float] = {
    "no_vehicle": 0.03,
    "blurry": 0.02,
    "motion_blur": 0.02,
    "dark": 0.02,
    "overexposed": 0.02,
    "noisy": 0.02,
    "small": 0.02,
    "truncated": 0.025,
    "duplicate": 0.02,
    "near_duplicate": 0.02,
}
TIME_OF_DAY = {"day": 0.6, "dusk": 0.15, "night": 0.25}
MIN_PER_ID, MAX_PER_ID = 10, 30
MIN_CLEAN_PER_ID = 5

GT_COLUMNS = [
    "path", "vehicle_id", "image_id", "type", "color", "model", "camera_id", "time", "time_of_day",
    "source", "background", "is_outlier", "outlier_kind", "duplicate_of", "mirrored", "width", "height",
    "jpeg_quality",
]


@dataclass
class DemoCollection:
    """A built demo collection."""

    root: Path  # the image folder root (``<out_dir>/images``)
    vehicle_info: Path  # ``<root>/vehicle_info.txt``
    ground_truth: Path  # ``<out_dir>/ground_truth.csv``
    n_images: int
    n_vehicles: int
    n_cameras: int
    n_outliers: int
    outlier_counts: dict[str, int] = field(default_factory=dict)
    sources: str = ""  # "debian" or "skimage"
    seed: int = 0
    size: int = 0

    @property
    def out_dir(self) -> Path:
        return self.root.parent


# ----------------------------------------------------------------------------------------------
# sizes and skipping


def resolve_size(size: int | str) -> int:
    if isinstance(size, str) and size.strip().isdigit():
        size = int(size)
    if isinstance(size, str):
        if size not in SIZES:
            raise ValueError(f"size must be one of {sorted(SIZES)} or an int, not {size!r}")
        return SIZES[size]
    n = int(size)
    if n < MIN_PER_ID:
        raise ValueError(f"size must be at least {MIN_PER_ID} images")
    return n


def _read_marker(out_dir: Path) -> dict | None:
    try:
        return json.loads((out_dir / MARKER).read_text())
    except (OSError, ValueError):
        return None


def _collection_from_marker(out_dir: Path, m: dict) -> DemoCollection:
    return DemoCollection(
        root=out_dir / "images",
        vehicle_info=out_dir / "images" / "vehicle_info.txt",
        ground_truth=out_dir / GROUND_TRUTH,
        n_images=m["n_images"],
        n_vehicles=m["n_vehicles"],
        n_cameras=m["n_cameras"],
        n_outliers=m["n_outliers"],
        outlier_counts=dict(m["outlier_counts"]),
        sources=m["sources"],
        seed=m["seed"],
        size=m["size"],
    )


_OWN_ENTRY = re.compile(r"(\d{5}|vehicle_info\.txt|\..*\.tmp\d+)")
_OWN_FILE = re.compile(r"(\d{6}\.jpg|\..*\.tmp\d+)")


def _clear_previous(out_dir: Path) -> None:
    """Remove a previous (complete or interrupted) demo build from ``out_dir``.

    Only files this module writes are removed; a foreign ``images`` folder is an error.
    """
    (out_dir / MARKER).unlink(missing_ok=True)  # first: an interrupted clean-up is never "complete"
    images = out_dir / "images"
    if images.exists():
        for entry in images.iterdir():
            ok = _OWN_ENTRY.fullmatch(entry.name) is not None
            if ok and entry.is_dir():
                ok = all(_OWN_FILE.fullmatch(f.name) for f in entry.iterdir())
            if not ok:
                raise FileExistsError(
                    f"{images} holds {entry.name!r}, which a vehiclust demo build did not write; "
                    "choose another output folder"
                )
        shutil.rmtree(images)
    (out_dir / GROUND_TRUTH).unlink(missing_ok=True)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------
# the plan: who is seen where and when, and which images are outliers


def _identity_counts(n: int, rng: np.random.Generator) -> list[int]:
    if n <= MAX_PER_ID:
        return [n]
    counts: list[int] = []
    while sum(counts) < n:
        counts.append(int(rng.integers(MIN_PER_ID, MAX_PER_ID + 1)))
    excess = sum(counts) - n
    i = 0
    while excess > 0:
        j = len(counts) - 1 - (i % len(counts))
        if counts[j] > MIN_PER_ID:
            counts[j] -= 1
            excess -= 1
        i += 1
    return counts


def _time_of(tod: str, rng: np.random.Generator) -> datetime:
    day = datetime(2018, 3, 1) + timedelta(days=int(rng.integers(0, 31)))
    if tod == "day":
        sec = rng.uniform(7 * 3600, 17 * 3600)
    elif tod == "dusk":
        sec = rng.uniform(17 * 3600, 19 * 3600) if rng.random() < 0.7 else rng.uniform(5.5 * 3600, 7 * 3600)
    else:
        sec = rng.uniform(19 * 3600, 29.5 * 3600)  # 19:00 .. 05:30 next day
    return day + timedelta(seconds=int(sec))


def _model_name(src: SourceSet, cut) -> str:
    pkg, path = cut.source.split(":", 1)
    if pkg == "tuxpaint-stamps-default":
        rel = path[:-4] if path.endswith(".png") else path
        return "tuxpaint:" + (rel[len("vehicles/"):] if rel.startswith("vehicles/") else rel)
    return f"{pkg}:{cut.name}"


def _plan(src: SourceSet, n: int, seed: int) -> tuple[list[dict], list[R.Camera], dict]:
    rng = np.random.default_rng([seed, 0x7E41C])
    counts = _identity_counts(n, rng)
    n_ids = len(counts)
    n_cams = int(np.clip(round(n / 70), 12, 174))

    cam_ids = np.sort(rng.choice(np.arange(1, 175), size=n_cams, replace=False))
    bg_order = rng.permutation(len(src.backgrounds))
    cameras = [
        R.make_camera(int(cam_ids[c]), src.backgrounds[int(bg_order[c % len(bg_order)])], src.road_texture,
                      np.random.default_rng([seed, 1, c]))
        for c in range(n_cams)
    ]

    if n_ids > 99_999 or n > 999_999:
        raise ValueError("a VeRi-Wild-like layout holds at most 99,999 vehicles and 999,999 images")
    vids = np.sort(rng.choice(np.arange(1, min(99_999, max(5 * n_ids, 100)) + 1), size=n_ids, replace=False))
    weights = np.array([v.meta.get("weight", 1.0) for v in src.vehicles], float)
    weights /= weights.sum()
    pal_names = list(R.PALETTE)
    pal_w = np.array([R.PALETTE[c][1] for c in pal_names], float)
    pal_w /= pal_w.sum()
    tods = list(TIME_OF_DAY)
    tod_w = np.array([TIME_OF_DAY[t] for t in tods], float)

    identities = []
    for i, k in enumerate(counts):
        vi = int(rng.choice(len(src.vehicles), p=weights))
        cut = src.vehicles[vi]
        fixed = cut.meta.get("colour")
        colour = fixed if fixed else pal_names[int(rng.choice(len(pal_names), p=pal_w))]
        shade = R.identity_shade(colour, rng) if not fixed else None
        # each vehicle keeps to a few roads: a handful of cameras it passes most of the time
        home = rng.choice(n_cams, size=min(n_cams, int(rng.integers(2, 7))), replace=False)
        caps = []
        for _ in range(k):
            c = int(rng.choice(home)) if rng.random() < 0.85 else int(rng.integers(n_cams))
            tod = tods[int(rng.choice(len(tods), p=tod_w))]
            caps.append(dict(cam=c, tod=tod, time=_time_of(tod, rng), outlier="", dup_of=None,
                             seed=int(rng.integers(2**63))))
        caps.sort(key=lambda d: d["time"])
        identities.append(dict(
            vehicle_id=f"{int(vids[i]):05d}", vehicle=vi, type=cut.meta["type"], colour=colour,
            shade=None if shade is None else [float(x) for x in shade], model=_model_name(src, cut),
            source=cut.source, captures=caps,
        ))

    # outliers: a fixed number of each kind, spread over identities, each keeping clean images
    slots = [(i, j) for i, ident in enumerate(identities) for j in range(len(ident["captures"]))]
    order = rng.permutation(len(slots))
    n_out = {i: 0 for i in range(n_ids)}
    kinds = []
    for kind, rate in OUTLIER_RATES.items():
        kinds += [kind] * max(1, int(round(rate * n))) if n >= 100 else []
    pos = 0
    for kind in kinds:
        while pos < len(order):
            i, j = slots[order[pos]]
            pos += 1
            if len(identities[i]["captures"]) - n_out[i] - 1 >= MIN_CLEAN_PER_ID:
                identities[i]["captures"][j]["outlier"] = kind
                n_out[i] += 1
                break
    # duplicates copy a clean image of the same vehicle; no-vehicle images show something else
    for ident in identities:
        caps = ident["captures"]
        clean = [c for c in caps if not c["outlier"]]
        for c in caps:
            if c["outlier"] in ("duplicate", "near_duplicate"):
                o = clean[int(rng.integers(len(clean)))]
                c["dup_ref"] = o
                c["cam"], c["tod"], c["time"] = o["cam"], o["tod"], o["time"]
            elif c["outlier"] == "no_vehicle":
                use = bool(src.distractors) and rng.random() < 0.65
                c["distractor"] = int(rng.integers(len(src.distractors))) if use else None
        # a duplicate is stored right after its original
        caps.sort(key=lambda d: (d["time"], "dup_ref" in d))
        index = {id(c): j for j, c in enumerate(caps)}
        for c in caps:
            ref = c.pop("dup_ref", None)
            c["dup_of"] = None if ref is None else index[id(ref)]
    image_id = 0
    gap = max(1, min(3, 999_999 // n))  # image ids increase with gaps, and keep to 6 digits
    for ident in identities:
        for c in ident["captures"]:
            image_id += int(rng.integers(1, gap + 1))
            c["image_id"] = f"{image_id:06d}"
            c["time"] = c["time"].strftime("%Y-%m-%d %H:%M:%S")
    info = dict(n_cameras=n_cams)
    return identities, cameras, info


# ----------------------------------------------------------------------------------------------
# rendering (in worker processes)

_STATE: dict = {}


def _init_worker(state: dict) -> None:
    _STATE.clear()
    _STATE.update(state)


def _render_identity(task: dict) -> list[dict]:
    out_dir = Path(_STATE["out_dir"])
    models: list[R.VehicleModel] = _STATE["models"]
    cameras: list[R.Camera] = _STATE["cameras"]
    distractors = _STATE["distractors"]
    model = models[task["vehicle"]]
    rgba = R.recolour(model, np.array(task["shade"], np.float32)) if task["shade"] is not None else model.rgba
    rgba = R.sky_light(rgba)
    veh = R.cutout_images(rgba, soften=float(np.clip(0.9 * rgba.shape[1] / 300, 0.3, 1.2)))
    vdir = out_dir / "images" / task["vehicle_id"]
    vdir.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    rendered: dict[int, tuple[bytes, R.Capture, str]] = {}
    caps = task["captures"]
    # originals first, duplicates after (they need their original's bytes)
    for j in sorted(range(len(caps)), key=lambda j: caps[j]["dup_of"] is not None):
        c = caps[j]
        cam = cameras[c["cam"]]
        rng = np.random.default_rng(c["seed"])
        rel = f"{task['vehicle_id']}/{c['image_id']}.jpg"
        kind = c["outlier"]
        typ, colour, model_name, source = task["type"], task["colour"], task["model"], task["source"]
        dup_path = ""
        if kind in ("duplicate", "near_duplicate"):
            data0, cap0, rel0 = rendered[c["dup_of"]]
            data, q = (data0, cap0.quality) if kind == "duplicate" else R.near_duplicate(data0, cap0.quality, rng)
            cap = R.Capture(cap0.width, cap0.height, q, cap0.mirrored)
            dup_path = rel0
        elif kind == "no_vehicle":
            typ = colour = model_name = "none"
            if c.get("distractor") is not None:
                d = distractors[c["distractor"]]
                obj = R.cutout_images(d.rgba.astype(np.float32) / 255.0, soften=0.5)
                source = d.source
                data, cap = R.render_capture(cam, obj, rng, time_of_day=c["tod"], is_vehicle=False)
            else:
                source = cam.background
                data, cap = R.render_capture(cam, None, rng, time_of_day=c["tod"], is_vehicle=False)
        else:
            data, cap = R.render_capture(cam, veh, rng, time_of_day=c["tod"], outlier=kind,
                                         facing=model.meta.get("facing", "right"), lamp_y=model.lamp_y)
        _write_atomic(out_dir / "images" / rel, data)
        rendered[j] = (data, cap, rel)
        rows.append(dict(
            path=rel, vehicle_id=task["vehicle_id"], image_id=c["image_id"], type=typ, color=colour,
            model=model_name, camera_id=cam.cam_id, time=c["time"], time_of_day=c["tod"], source=source,
            background=cam.background, is_outlier=bool(kind), outlier_kind=kind, duplicate_of=dup_path,
            mirrored=cap.mirrored if kind != "no_vehicle" else False, width=cap.width, height=cap.height,
            jpeg_quality=cap.quality,
        ))
    return rows


# ----------------------------------------------------------------------------------------------
# the public entry point


def build_demo(
    out_dir: Path,
    size: int | str = "default",
    seed: int = 0,
    *,
    cache_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DemoCollection:
    """Build (or reuse) the demo collection under ``out_dir``; see the package docstring.

    ``size``: "small" (1,000 images), "default" (5,000) or a number of images.  The same
    ``seed`` gives the same files, byte for byte.  A complete build of the same size, seed and
    generator version already in ``out_dir`` is returned as it is.  ``cache_dir`` is where the
    source photographs are cached (default: ``$VEHICLUST_CACHE``, else
    ``$XDG_CACHE_HOME/vehiclust``, else ``~/.cache/vehiclust``).  ``progress(done, total)`` is
    called as images are written.
    """
    out_dir = Path(out_dir)
    n = resolve_size(size)
    seed = int(seed)
    complete = _complete_build(out_dir, n, seed)
    if complete is not None:
        return complete
    out_dir.mkdir(parents=True, exist_ok=True)
    with exclusive(out_dir / LOCK):  # two first runs would clear each other's images
        complete = _complete_build(out_dir, n, seed)  # another process built it while we waited
        if complete is not None:
            return complete
        return _build(out_dir, size, n, seed, cache_dir, progress)


def _complete_build(out_dir: Path, n: int, seed: int) -> DemoCollection | None:
    m = _read_marker(out_dir)
    if (
        m is not None
        and m.get("generator_version") == GENERATOR_VERSION
        and m.get("size") == n
        and m.get("seed") == seed
        and (out_dir / GROUND_TRUTH).exists()
        and (out_dir / "images" / "vehicle_info.txt").exists()
    ):
        return _collection_from_marker(out_dir, m)
    return None


def _build(out_dir: Path, size: int | str, n: int, seed: int, cache_dir: Path | None,
           progress: Callable[[int, int], None] | None) -> DemoCollection:
    src = load_sources(cache_dir)
    identities, cameras, info = _plan(src, n, seed)

    # start from a clean slate (marker first, so an interrupted rebuild is never taken as complete)
    _clear_previous(out_dir)
    (out_dir / "images").mkdir()

    state = dict(
        out_dir=str(out_dir),
        models=[R.prepare_vehicle(v) for v in src.vehicles],
        cameras=cameras,
        distractors=src.distractors,
    )
    tasks = [
        dict(vehicle_id=d["vehicle_id"], vehicle=d["vehicle"], type=d["type"], colour=d["colour"],
             shade=d["shade"], model=d["model"], source=d["source"], captures=d["captures"])
        for d in identities
    ]
    rows: list[dict] = []
    done = 0
    workers = min(2, os.cpu_count() or 1)
    if n >= 200 and workers > 1:
        method = "fork" if sys.platform.startswith("linux") else "spawn"
        ctx = mp.get_context(method)
        with ctx.Pool(workers, initializer=_init_worker, initargs=(state,)) as pool:
            for r in pool.imap_unordered(_render_identity, tasks, chunksize=1):
                rows += r
                done += len(r)
                if progress:
                    progress(done, n)
    else:
        _init_worker(state)
        for t in tasks:
            r = _render_identity(t)
            rows += r
            done += len(r)
            if progress:
                progress(done, n)
        _STATE.clear()

    gt = pd.DataFrame(rows, columns=GT_COLUMNS).sort_values("path").reset_index(drop=True)
    lines = [VEHICLE_INFO_HEADER] + [
        f"{p[:-4]};{cam};{t};{mod};{typ};{col}"
        for p, cam, t, mod, typ, col in zip(gt.path, gt.camera_id, gt.time, gt.model, gt.type, gt.color)
    ]
    _write_atomic(out_dir / "images" / "vehicle_info.txt", ("\n".join(lines) + "\n").encode())
    _write_atomic(out_dir / GROUND_TRUTH, gt.to_csv(index=False).encode())

    kinds = gt.outlier_kind[gt.is_outlier].value_counts()
    marker = dict(
        generator_version=GENERATOR_VERSION,
        size=n,
        size_label=size if isinstance(size, str) else str(n),
        seed=seed,
        sources=src.kind,
        source_packages=src.packages,
        source_counts=src.counts(),
        n_images=int(len(gt)),
        n_vehicles=int(gt.vehicle_id.nunique()),
        n_cameras=int(info["n_cameras"]),
        n_outliers=int(gt.is_outlier.sum()),
        outlier_counts={k: int(v) for k, v in kinds.items()},
        completed=datetime.now().isoformat(timespec="seconds"),
    )
    _write_atomic(out_dir / MARKER, json.dumps(marker, indent=1).encode())  # last
    return _collection_from_marker(out_dir, marker)


def load_ground_truth(out_dir: Path) -> pd.DataFrame:
    """The ground-truth table of a demo collection (one row per image)."""
    df = pd.read_csv(
        Path(out_dir) / GROUND_TRUTH,
        dtype={"path": str, "vehicle_id": str, "image_id": str, "type": str, "color": str, "model": str,
               "outlier_kind": str, "duplicate_of": str, "source": str, "background": str},
        keep_default_na=False,
    )
    df["is_outlier"] = df["is_outlier"].astype(str).str.lower().eq("true")
    df["mirrored"] = df["mirrored"].astype(str).str.lower().eq("true")
    return df
