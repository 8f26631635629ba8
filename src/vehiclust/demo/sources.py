"""Obtaining, caching and loading the real photographs the demo collection is made from.

Sources (first use only; afterwards everything comes from the cache):

* Debian ``tuxpaint-stamps-default``: photographic cut-outs (RGBA PNG) of real vehicles and
  of animals, food and plants.  Drawings (``cartoon`` folders, flat-colour stamps) are left out.
* Debian wallpaper packages (``mate-backgrounds``, ``lomiri-wallpapers-16.04``,
  ``plasma-workspace-wallpapers``): landscape photographs without vehicles, used as camera
  backgrounds.
* scikit-image's bundled ``gravel`` photograph: fine texture of the road surface.

Packages are fetched with ``apt-get download`` (no install) and read with ``dpkg-deb``; only the
files used are kept, down-scaled, under ``<cache>/demo-sources/`` with a ``manifest.json``.
Where apt is unavailable, a much smaller fallback set is made from scikit-image's bundled
photographs (see :func:`_fallback_sources`).
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from vehiclust.cache import cache_root, exclusive

log = logging.getLogger(__name__)

SOURCES_VERSION = 1
_CACHE_SUBDIR = "demo-sources"
_STAMPS_PREFIX = "usr/share/tuxpaint/stamps/"

# Photographic vehicle cut-outs in tuxpaint-stamps-default, all side views.
# facing: which end of the (unmirrored) picture is the front of the vehicle.
# colour: None = body paint can be recoloured; else the fixed colour a person would name.
# paint_min_sat: where the body's pale reflections can be told from glass by hue alone (red
# bodies, grey glass), the paint mask reaches down to this saturation (default 0.16) and this
# far in hue (default 0.085 of the hue circle: sky reflections turn a red roof purple).
VEHICLE_CATALOGUE: dict[str, dict] = {
    "sedan": dict(stamp="vehicles/auto/sedan.png", type="sedan", facing="right", colour=None, weight=0.25),
    "beetle": dict(stamp="vehicles/auto/beetle.png", type="hatchback", facing="left", colour=None, weight=0.14,
                   paint_min_sat=0.11, paint_hue_tol=0.12),
    "sportscar2": dict(stamp="vehicles/auto/sportscar2.png", type="sportscar", facing="right", colour=None,
                       weight=0.11, paint_min_sat=0.07, paint_hue_tol=0.12),
    "truck": dict(stamp="vehicles/auto/truck.png", type="pickup", facing="right", colour=None, weight=0.19),
    "green_korean_bus": dict(stamp="vehicles/masstransit/green_korean_bus.png", type="bus", facing="left", colour=None, weight=0.13),
    "garbagetruck": dict(stamp="vehicles/garbagetruck.png", type="truck", facing="left", colour="white", weight=0.08),
    "firetruck": dict(stamp="vehicles/emergency/firetruck.png", type="truck", facing="left", colour="red", weight=0.05),
    "infantry-stryker": dict(stamp="military/vehicles/infantry-stryker.png", type="military", facing="right", colour="gray", weight=0.05),
}

# Folders of the stamps package whose photographs are no-vehicle distractors.
DISTRACTOR_TOPS = ("animals/", "food/", "plants/")
# Photographic-looking files that are in fact drawings.
_DISTRACTOR_BLOCK = {"hedgehog.png", "pizza.png", "echidna.png"}

# Landscape photographs (no vehicle in view) used as backgrounds: package -> paths in the package
# (a path ending in "/" stands for the first photograph stored in that folder).
WALLPAPERS: dict[str, list[str]] = {
    "mate-backgrounds": [
        "usr/share/backgrounds/mate/nature/Dune.jpg",
        "usr/share/backgrounds/mate/nature/Storm.jpg",
        "usr/share/backgrounds/mate/nature/GreenMeadow.jpg",
        "usr/share/backgrounds/mate/nature/Wood.jpg",
    ],
    "lomiri-wallpapers-16.04": [
        "usr/share/backgrounds/aitzgorri_by_Aitzol_Berasategi.jpg",
        "usr/share/backgrounds/picosdeeuropa_by_Aitzol_Berasategi.jpg",
        "usr/share/backgrounds/sunset_by_Aitzol_Berasategi.jpg",
        "usr/share/backgrounds/life_by_Aitzol_Berasategi.jpg",
        "usr/share/backgrounds/seeding_by_Clements_Engelhardt.jpg",
        "usr/share/backgrounds/Bridge_by_Sander_Klootwijk.jpg",
    ],
    "plasma-workspace-wallpapers": [
        "usr/share/wallpapers/Path/contents/images/",
        "usr/share/wallpapers/BytheWater/contents/images/",
        "usr/share/wallpapers/ColdRipple/contents/images/",
        "usr/share/wallpapers/summer_1am/contents/images/",
        "usr/share/wallpapers/DarkestHour/contents/images/",
        "usr/share/wallpapers/FallenLeaf/contents/images/",
    ],
}
STAMPS_PACKAGE = "tuxpaint-stamps-default"

_VEHICLE_MAX_WIDTH = 560  # working resolution of vehicle cut-outs (output crops are narrower)
_DISTRACTOR_MAX_SIDE = 320
_BACKGROUND_MAX_SIDE = 1280


@dataclass
class Cutout:
    """An RGBA photograph cut out of its background (a vehicle or a distractor)."""

    name: str
    source: str  # "<package>:<path in package>"
    rgba: np.ndarray  # uint8, HxWx4
    meta: dict = field(default_factory=dict)


@dataclass
class Background:
    name: str
    source: str
    rgb: np.ndarray  # uint8, HxWx3


@dataclass
class SourceSet:
    kind: str  # "debian" or "skimage"
    vehicles: list[Cutout]
    distractors: list[Cutout]
    backgrounds: list[Background]
    road_texture: np.ndarray  # float32 HxW, zero mean, unit std
    packages: dict[str, str]  # package -> version

    def counts(self) -> dict[str, int]:
        return {
            "vehicles": len(self.vehicles),
            "distractors": len(self.distractors),
            "backgrounds": len(self.backgrounds),
        }


# ----------------------------------------------------------------------------------------------
# cache location


def default_cache_dir() -> Path:
    return cache_root()


# ----------------------------------------------------------------------------------------------
# apt helpers


class SourceUnavailable(RuntimeError):
    pass


def _run(cmd: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _apt_download(packages: list[str], workdir: Path) -> dict[str, Path]:
    """Download .deb files of ``packages`` into ``workdir``; returns package -> .deb for those found."""
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        raise SourceUnavailable("apt-get/dpkg-deb not found")
    found: dict[str, Path] = {}

    def attempt() -> None:
        for pkg in packages:
            if pkg in found:
                continue
            try:
                _run(["apt-get", "download", pkg], workdir)
            except (subprocess.TimeoutExpired, OSError):
                continue
            debs = sorted(workdir.glob(f"{pkg}_*.deb"))
            if debs:
                found[pkg] = debs[-1]

    attempt()
    if STAMPS_PACKAGE not in found and hasattr(os, "geteuid") and os.geteuid() == 0:
        # empty or stale package lists: refresh once (we are root) and retry
        try:
            _run(["apt-get", "update"], workdir, timeout=600)
        except (subprocess.TimeoutExpired, OSError):
            pass
        attempt()
    if STAMPS_PACKAGE not in found:
        raise SourceUnavailable(f"'apt-get download {STAMPS_PACKAGE}' failed")
    return found


def _deb_version(deb: Path) -> str:
    # file name: <pkg>_<version>_<arch>.deb with ':' escaped as %3a
    parts = deb.name.split("_")
    return parts[1].replace("%3a", ":") if len(parts) >= 3 else "?"


def _iter_deb_members(deb: Path, wanted):
    """Yield (path, bytes) for members of ``deb``'s data archive for which ``wanted(path)`` is true."""
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                name = member.name[2:] if member.name.startswith("./") else member.name
                if wanted(name):
                    f = tar.extractfile(member)
                    if f is not None:
                        yield name, f.read()
    finally:
        proc.stdout.close()
        proc.wait()


# ----------------------------------------------------------------------------------------------
# selection


def _is_photograph(rgba: np.ndarray) -> bool:
    """Photographs have thousands of distinct colours; drawings a few hundred."""
    opaque = rgba[..., 3] > 200
    if opaque.sum() < 400 or max(rgba.shape[:2]) < 60:
        return False
    rgb = rgba[..., :3][opaque].astype(np.int32)
    n_colours = len(np.unique(rgb[:, 0] * 65536 + rgb[:, 1] * 256 + rgb[:, 2]))
    return n_colours >= 1000


def _trim_alpha(im: Image.Image) -> Image.Image:
    bbox = im.getchannel("A").point(lambda v: 255 if v > 8 else 0).getbbox()
    return im.crop(bbox) if bbox else im


def _limit(im: Image.Image, max_w: int | None = None, max_side: int | None = None) -> Image.Image:
    w, h = im.size
    s = 1.0
    if max_w and w > max_w:
        s = min(s, max_w / w)
    if max_side and max(w, h) > max_side:
        s = min(s, max_side / max(w, h))
    if s < 1.0:
        im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.LANCZOS)
    return im


def _safe_name(path: str) -> str:
    return path.replace("/", "__")


def _populate_cache(target: Path) -> None:
    """Download the Debian packages, select and store what the demo uses under ``target``."""
    manifest: dict = {"version": SOURCES_VERSION, "kind": "debian", "packages": {}, "files": []}
    (target / "vehicles").mkdir(parents=True)
    (target / "distractors").mkdir()
    (target / "backgrounds").mkdir()
    (target / "licenses").mkdir()
    with tempfile.TemporaryDirectory(prefix="vehiclust-apt-") as tmp:
        tmpdir = Path(tmp)
        debs = _apt_download([STAMPS_PACKAGE, *WALLPAPERS], tmpdir)
        for pkg, deb in debs.items():
            manifest["packages"][pkg] = _deb_version(deb)

        vehicle_paths = {_STAMPS_PREFIX + v["stamp"]: k for k, v in VEHICLE_CATALOGUE.items()}
        copyright_path = f"usr/share/doc/{STAMPS_PACKAGE}/copyright"

        def want_stamp(p: str) -> bool:
            if p in vehicle_paths or p == copyright_path:
                return True
            if not p.startswith(_STAMPS_PREFIX) or not p.endswith(".png"):
                return False
            rel = p[len(_STAMPS_PREFIX):]
            return (
                rel.startswith(DISTRACTOR_TOPS)
                and "/cartoon/" not in rel
                and not rel.endswith("_mirror.png")
                and rel.rsplit("/", 1)[-1] not in _DISTRACTOR_BLOCK
            )

        for path, data in _iter_deb_members(debs[STAMPS_PACKAGE], want_stamp):
            if path == copyright_path:
                (target / "licenses" / f"{STAMPS_PACKAGE}.copyright").write_bytes(data)
                continue
            im = Image.open(io.BytesIO(data)).convert("RGBA")
            rel = path[len(_STAMPS_PREFIX):]
            if path in vehicle_paths:
                name = vehicle_paths[path]
                im = _limit(_trim_alpha(im), max_w=_VEHICLE_MAX_WIDTH)
                fn = f"vehicles/{name}.png"
                kind = "vehicle"
            else:
                if not _is_photograph(np.asarray(im)):
                    continue
                name = rel[:-4]
                im = _limit(_trim_alpha(im), max_side=_DISTRACTOR_MAX_SIDE)
                fn = f"distractors/{_safe_name(name)}.png"
                kind = "distractor"
            im.save(target / fn, optimize=False, compress_level=3)
            manifest["files"].append(
                dict(kind=kind, name=name, file=fn, source=f"{STAMPS_PACKAGE}:{rel}")
            )

        for pkg, paths in WALLPAPERS.items():
            if pkg not in debs:
                continue
            files = set(p for p in paths if not p.endswith("/"))
            folders = [p for p in paths if p.endswith("/")]
            done_folders: set[str] = set()
            copyright_path = f"usr/share/doc/{pkg}/copyright"

            def want_wallpaper(p: str) -> bool:
                if p in files or p == copyright_path:
                    return True
                return any(p.startswith(d) and p.lower().endswith((".jpg", ".png")) for d in folders)

            for path, data in _iter_deb_members(debs[pkg], want_wallpaper):
                if path == copyright_path:
                    (target / "licenses" / f"{pkg}.copyright").write_bytes(data)
                    continue
                folder = next((d for d in folders if path.startswith(d)), None)
                if folder is not None:
                    if folder in done_folders:
                        continue
                    done_folders.add(folder)
                im = Image.open(io.BytesIO(data))
                im.draft("RGB", (_BACKGROUND_MAX_SIDE, _BACKGROUND_MAX_SIDE))
                im = _limit(im.convert("RGB"), max_side=_BACKGROUND_MAX_SIDE)
                stem = path.split("/contents/")[0].rsplit("/", 1)[-1] if "/contents/" in path else path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
                fn = f"backgrounds/{pkg}__{stem}.jpg"
                im.save(target / fn, quality=93)
                manifest["files"].append(dict(kind="background", name=stem, file=fn, source=f"{pkg}:{path}"))

    kinds = {f["kind"] for f in manifest["files"]}
    if "vehicle" not in kinds:
        raise SourceUnavailable("the Debian packages did not hold the expected photographs")
    (target / "manifest.json").write_text(json.dumps(manifest, indent=1))


def _manifest_ok(target: Path) -> bool:
    try:
        return json.loads((target / "manifest.json").read_text()).get("version") == SOURCES_VERSION
    except (OSError, ValueError):
        return False


def ensure_cache(cache_dir: Path | None = None) -> Path:
    """Return the folder of cached Debian sources, downloading them on first use.

    Concurrent first uses are serialised by a lock file; the folder appears complete or not at all.
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / _CACHE_SUBDIR
    if _manifest_ok(target):
        return target
    with exclusive(root / ".demo-sources.lock"):
        if _manifest_ok(target):  # another process made it while we waited
            return target
        tmp = Path(tempfile.mkdtemp(prefix=".demo-sources-", dir=root))
        log.info("fetching the demo's source photographs from Debian packages into %s (once)", target)
        try:
            _populate_cache(tmp / "s")
            if target.exists():  # an older or broken cache
                old = Path(tempfile.mkdtemp(prefix=".demo-sources-old-", dir=root))
                os.replace(target, old / "s")
                shutil.rmtree(old, ignore_errors=True)
            os.replace(tmp / "s", target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


# ----------------------------------------------------------------------------------------------
# loading


def _road_texture() -> np.ndarray:
    from skimage import data

    g = data.gravel().astype(np.float32)
    g = (g - g.mean()) / (g.std() + 1e-6)
    return g


def _load_debian(folder: Path) -> SourceSet:
    manifest = json.loads((folder / "manifest.json").read_text())
    vehicles, distractors, backgrounds = [], [], []
    for f in manifest["files"]:
        path = folder / f["file"]
        if f["kind"] == "vehicle":
            cat = VEHICLE_CATALOGUE.get(f["name"])
            if cat is None:
                continue
            rgba = np.asarray(Image.open(path).convert("RGBA"))
            vehicles.append(Cutout(f["name"], f["source"], rgba, dict(cat)))
        elif f["kind"] == "distractor":
            rgba = np.asarray(Image.open(path).convert("RGBA"))
            distractors.append(Cutout(f["name"], f["source"], rgba, {"category": f["name"].split("/")[0]}))
        elif f["kind"] == "background":
            rgb = np.asarray(Image.open(path).convert("RGB"))
            backgrounds.append(Background(f["name"], f["source"], rgb))
    if not backgrounds:
        warnings.warn("vehiclust demo: no wallpaper package could be fetched; backgrounds are "
                      "scikit-image's texture photographs", RuntimeWarning, stacklevel=3)
        backgrounds = _texture_backgrounds()
    order = list(VEHICLE_CATALOGUE)
    vehicles.sort(key=lambda c: order.index(c.name))
    distractors.sort(key=lambda c: c.name)
    backgrounds.sort(key=lambda b: b.source)
    return SourceSet("debian", vehicles, distractors, backgrounds, _road_texture(), manifest["packages"])


def _fallback_sources() -> SourceSet:
    """Scikit-image's bundled photographs: a tiny, not VeRi-Wild-like stand-in.

    The vehicle is the motorcycle of the Middlebury stereo pair (``motorcycle_left/right``), cut
    out of its garage with the disparity map (it is the nearest object); distractors are the
    cat, coffee cup, rocket and astronaut photographs; backgrounds are the grass and brick
    textures, tinted.
    """
    from skimage import data

    left, right, disp = data.stereo_motorcycle()
    disp = np.nan_to_num(np.asarray(disp, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    mask = disp > np.percentile(disp[disp > 0], 55)
    from scipy import ndimage

    mask = ndimage.binary_opening(mask, iterations=2)
    lab, n = ndimage.label(mask)
    if n:
        sizes = ndimage.sum(mask, lab, range(1, n + 1))
        mask = lab == (1 + int(np.argmax(sizes)))
    mask = ndimage.binary_fill_holes(ndimage.binary_closing(mask, iterations=3))
    vehicles = []
    for name, img in (("motorcycle_left", left), ("motorcycle_right", right)):
        rgba = np.dstack([img, (mask * 255).astype(np.uint8)])
        im = _limit(_trim_alpha(Image.fromarray(rgba, "RGBA")), max_w=_VEHICLE_MAX_WIDTH)
        vehicles.append(
            Cutout(name, f"scikit-image:data/{name}.png", np.asarray(im),
                   dict(type="motorcycle", facing="left", colour=None, weight=0.5))
        )
    distractors = []
    for name in ("chelsea", "coffee", "rocket", "astronaut"):
        img = getattr(data, name)()
        rgba = np.dstack([img, np.full(img.shape[:2], 255, np.uint8)])
        im = _limit(Image.fromarray(rgba, "RGBA"), max_side=_DISTRACTOR_MAX_SIDE)
        distractors.append(Cutout(name, f"scikit-image:data/{name}", np.asarray(im), {"category": "fallback"}))
    return SourceSet("skimage", vehicles, distractors, _texture_backgrounds(), _road_texture(),
                     {"scikit-image": "bundled"})


def _texture_backgrounds() -> list[Background]:
    from skimage import data

    backgrounds = []
    tints = {"grass": (0.55, 0.75, 0.45), "brick": (0.8, 0.55, 0.45)}
    for name, tint in tints.items():
        g = getattr(data, name)().astype(np.float32) / 255.0
        rgb = np.clip(g[..., None] * np.array(tint, np.float32) * 1.3 * 255, 0, 255).astype(np.uint8)
        backgrounds.append(Background(name, f"scikit-image:data/{name}", rgb))
    return backgrounds


_LOADED: dict[tuple, SourceSet] = {}  # the last Debian set loaded in this process


def load_sources(cache_dir: Path | None = None) -> SourceSet:
    """Load the demo's source photographs: Debian packages (cached), else the skimage fallback.

    ``VEHICLUST_DEMO_SOURCES=skimage`` forces the fallback; ``=debian`` forbids it.
    """
    mode = os.environ.get("VEHICLUST_DEMO_SOURCES", "auto").lower()
    if mode != "skimage":
        try:
            folder = ensure_cache(cache_dir)
            key = (str(folder.resolve()), (folder / "manifest.json").stat().st_mtime_ns)
            if key not in _LOADED:
                _LOADED.clear()
                _LOADED[key] = _load_debian(folder)
            return _LOADED[key]
        except (SourceUnavailable, OSError, subprocess.SubprocessError, tarfile.TarError) as exc:
            if mode == "debian":
                raise
            warnings.warn(
                f"vehiclust demo: Debian source photographs unavailable ({exc}); using scikit-image's "
                "few bundled photographs instead. This fallback collection is small and not "
                "VeRi-Wild-like (one motorcycle, textures as backgrounds).",
                RuntimeWarning,
                stacklevel=2,
            )
    return _fallback_sources()
