"""Image quality measurements, checks and duplicates on real photographs with planted defects."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFilter
from scipy import ndimage

from vehiclust.errors import VehiclustError
from vehiclust.quality import (COLUMNS, DEFAULT_CHECKS, CheckContext, create_check, create_checks, exact_duplicates,
                               hashes_from_chunks, measure_batch, near_duplicates, score_checks, thresholds_table)
from vehiclust.quality.describer import MAX_SIDE, QualityDescriber, decode_original

# ordinary photographs (scikit-image's bundled ones); the space, microscopy and synthetic ones
# are dark, bright or flat by nature and would be flagged, rightly, and "rocket" (a tall tower
# against a smooth sky: almost no vertical detail) reads as motion blur. ("cat" is chelsea.)
PHOTOS = ("astronaut", "chelsea", "coffee", "retina")
DEFECTS = ("blurry", "motion", "dark", "overexposed", "noisy", "jpeg", "low_contrast", "flat", "small", "gray")
EXPECTED = {  # planted defect -> the check that must flag it
    "blurry": "blurry", "motion": "blurry", "dark": "dark", "overexposed": "overexposed", "noisy": "noisy",
    "jpeg": "jpeg", "low_contrast": "low_contrast", "flat": "low_information", "small": "small", "gray": "grayscale",
}


def photo(name: str, side: int = 320) -> Image.Image:
    from skimage import data

    image = np.asarray(getattr(data, name)())
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    pil = Image.fromarray(image[..., :3])
    return pil.resize((side, round(side * pil.height / pil.width)), Image.Resampling.LANCZOS)


def jpeg_bytes(array: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def planted(pil: Image.Image, defect: str, rng: np.random.Generator) -> bytes:
    a = np.asarray(pil)
    f = a.astype(np.float64)
    if defect == "clean":
        return jpeg_bytes(a)
    if defect == "blurry":
        return jpeg_bytes(np.asarray(pil.filter(ImageFilter.GaussianBlur(6))))
    if defect == "motion":
        return jpeg_bytes(ndimage.uniform_filter1d(a, 31, axis=1))
    if defect == "dark":
        return jpeg_bytes((f * 0.12).astype(np.uint8))
    if defect == "overexposed":
        return jpeg_bytes(np.clip(f * 3 + 60, 0, 255).astype(np.uint8))
    if defect == "noisy":
        return jpeg_bytes(np.clip(f + rng.normal(0, 40, a.shape), 0, 255).astype(np.uint8))
    if defect == "jpeg":
        return jpeg_bytes(a, quality=4)
    if defect == "low_contrast":
        return jpeg_bytes((128 + (f - 128) * 0.08).astype(np.uint8))
    if defect == "flat":
        return jpeg_bytes(np.full_like(a, 120) + rng.integers(0, 2, a.shape).astype(np.uint8))
    if defect == "small":
        return jpeg_bytes(np.asarray(pil.resize((24, 16), Image.Resampling.BOX)))
    if defect == "gray":
        return jpeg_bytes(np.repeat(np.asarray(pil.convert("L"))[..., None], 3, axis=-1))
    raise ValueError(defect)


@pytest.fixture(scope="module")
def planted_table() -> pd.DataFrame:
    """Measurements of 4 photographs x (clean + 10 defects), plus 32 more clean crops."""
    rng = np.random.default_rng(0)
    rows, images = [], []
    for name in PHOTOS:
        pil = photo(name)
        for defect in ("clean",) + DEFECTS:
            images.append(decoded(planted(pil, defect, rng)))
            rows.append({"photo": name, "defect": defect})
        for _ in range(8):  # ordinary variety: crops of other sizes and shapes
            w, h = pil.size
            x0, y0 = int(rng.integers(0, w // 4)), int(rng.integers(0, h // 4))
            cw, ch = int(rng.integers(w // 2, 3 * w // 4)), int(rng.integers(h // 2, 3 * h // 4))
            crop = pil.crop((x0, y0, x0 + cw, y0 + ch))
            images.append(decoded(jpeg_bytes(np.asarray(crop))))
            rows.append({"photo": name, "defect": "clean"})
    frame = pd.DataFrame(rows)
    matrix = measure_batch(images)
    frame = pd.concat([frame, pd.DataFrame(matrix, columns=COLUMNS)], axis=1)
    frame["width"] = [im.shape[1] for im in images]
    frame["height"] = [im.shape[0] for im in images]
    return frame


def test_measurements_are_finite_and_in_range(planted_table):
    clean = planted_table[planted_table["defect"] == "clean"]
    assert np.isfinite(clean[list(COLUMNS)].to_numpy()).all()
    for column in ("brightness", "luma_p01", "luma_p99", "dark_fraction", "clipped_fraction", "blur", "saturation"):
        assert planted_table[column].between(0, 1).all(), column
    assert (planted_table["luma_p01"] <= planted_table["luma_p50"]).all()
    assert (planted_table["luma_p50"] <= planted_table["luma_p99"]).all()
    assert planted_table["entropy"].between(0, 8).all()
    by = planted_table.groupby("defect")
    # each defect moves its own measurement the right way, for every photograph
    assert (by.get_group("blurry")["blur"].to_numpy() > by.get_group("clean")["blur"].max() - 0.05).all()
    assert by.get_group("noisy")["noise"].min() > 5 * clean["noise"].median()
    assert by.get_group("jpeg")["blockiness"].min() > clean["blockiness"].max()
    assert by.get_group("gray")["saturation"].max() < 0.02 < clean["saturation"].min()
    assert by.get_group("dark")["brightness"].max() < clean["brightness"].min()


def test_every_planted_defect_is_flagged_by_its_check_and_clean_photos_are_not(planted_table):
    clean = planted_table[planted_table["defect"] == "clean"]
    checks = create_checks()
    scores = pd.DataFrame(score_checks(clean, checks))
    false_alarms = (scores >= 0.5).any(axis=1)
    assert false_alarms.mean() <= 0.05, scores[false_alarms.to_numpy()].round(2)
    for defect, check in EXPECTED.items():
        for _, row in planted_table[planted_table["defect"] == defect].iterrows():
            # one defective image among the 36 clean ones, as in a real collection
            data = pd.concat([clean, row.to_frame().T], ignore_index=True).infer_objects()
            score = score_checks(data, checks)[check][-1]
            assert score >= 0.5, (defect, row["photo"], check, round(score, 3))


def test_brisque_ranks_heavy_defects_worse(planted_table):
    by = planted_table.set_index(["photo", "defect"])["brisque"]
    for name in PHOTOS:
        assert by[(name, "noisy")] > by.loc[name].loc["clean"].iloc[0]
        assert by[(name, "jpeg")] > by.loc[name].loc["clean"].iloc[0]


def test_thresholds_and_modes_can_be_overridden(planted_table):
    data = planted_table
    default = create_check("dark").score(data)
    stricter = create_check("dark", threshold=0.9).score(data)
    np.testing.assert_array_equal(default, stricter)  # same scores, other flag level
    assert (default >= 0.9).sum() < (default >= 0.5).sum()
    moved = create_check("dark", good=0.5, bad=0.3).score(data)
    assert (moved >= 0.5).sum() > (default >= 0.5).sum()
    table = thresholds_table()
    assert set(table["check"]) == set(DEFAULT_CHECKS) and set(table["mode"]) <= {"absolute", "relative"}
    with pytest.raises(VehiclustError, match="unknown quality check 'sharpish'"):
        create_check("sharpish")
    with pytest.raises(VehiclustError, match="mode must be"):
        create_check("dark", mode="sometimes")
    with pytest.raises(VehiclustError, match="unknown checks"):
        create_checks(overrides={"blury": {"threshold": 0.3}})


def test_a_night_camera_is_not_all_outliers(planted_table):
    """Dark images that are the normal state of their camera are damped below the threshold,
    while the one dark image of a day camera stays flagged."""
    clean = planted_table[planted_table["defect"] == "clean"].head(30)
    dark = planted_table[planted_table["defect"] == "dark"]
    data = pd.concat([clean, dark, dark, dark, dark], ignore_index=True)  # 20 dark images
    camera = np.array(["day"] * len(clean) + ["night"] * (len(data) - len(clean)), dtype=object)
    camera[0] = "night"  # one clean image taken by the night camera
    data = pd.concat([data, dark.head(1)], ignore_index=True)  # and one dark image of the day camera
    camera = np.append(camera, "day")
    scores = create_check("dark").score(data, CheckContext(groups=camera))
    assert (scores[camera == "night"][1:] < 0.5).all()  # the night camera's dark images: its normal
    assert scores[-1] >= 0.5  # the day camera's dark image: an outlier
    # a relative check follows the collection: the same images are not 'dark' among dark ones
    relative = create_check("dark", mode="relative").score(data.iloc[len(clean):-1])
    assert (relative < 0.5).mean() > 0.9


def test_grayscale_is_an_outlier_only_where_it_is_rare(planted_table):
    gray = planted_table[planted_table["defect"] == "gray"]
    clean = planted_table[planted_table["defect"] == "clean"]
    check = create_check("grayscale")
    rare = pd.concat([clean, gray.head(1)], ignore_index=True)
    assert check.score(rare)[-1] >= 0.5
    infrared_camera = pd.concat([clean.head(10), gray, gray], ignore_index=True)  # 10 of 20 grey
    assert (check.score(infrared_camera) < 0.5).all()


def test_odd_aspect_is_relative_to_the_collection(planted_table):
    data = planted_table[planted_table["defect"] == "clean"][["width", "height"]]
    sliver = pd.DataFrame({"width": [30], "height": [300]})  # a sliver, like a badly cut crop
    scores = create_check("odd_aspect").score(pd.concat([data, sliver], ignore_index=True))
    assert scores[-1] >= 0.5 and (scores[:-1] < 0.5).all()


def test_exact_and_near_duplicates_of_real_photographs():
    originals = [photo(name, side) for name, side in zip(PHOTOS + ("rocket",), (300, 280, 320, 300, 260))]
    arrays = [np.asarray(p) for p in originals]
    files = [jpeg_bytes(a, 90) for a in arrays]
    files.append(files[1])  # 5: byte-identical copy of 1
    files.append(jpeg_bytes(arrays[2], 84))  # 6: re-encoded 2
    shifted = np.pad(arrays[3], ((1, 0), (2, 0), (0, 0)), mode="edge")[:-1, :-2]  # 1 down, 2 right
    files.append(jpeg_bytes(shifted, 90))  # 7: 3 shifted by a pixel or two
    files.append(jpeg_bytes(np.asarray(originals[0].resize((240, 240))), 90))  # 8: 0 resized
    files.append(jpeg_bytes(np.clip(arrays[2] * 0.8, 0, 255).astype(np.uint8)))  # 9: 2 darker: not a copy
    import hashlib

    content = [hashlib.blake2b(f, digest_size=12).hexdigest() for f in files]
    score, original = exact_duplicates(content)
    assert score.tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 0, 0] and original[5] == 1
    images = [decoded(f) for f in files]
    matrix = pd.DataFrame(measure_batch(images), columns=COLUMNS)
    hashes = hashes_from_chunks(matrix[[f"phash16_{i}" for i in range(4)]].to_numpy())
    aspect = np.log([im.shape[1] / im.shape[0] for im in images])
    signature = np.column_stack([matrix[["brightness", "contrast", "chroma"]].to_numpy(), aspect])
    sizes = np.array([im.shape[1] * 100003 + im.shape[0] for im in images])
    near, near_of, _ = near_duplicates(hashes, exact_original=original, signature=signature, size_keys=sizes)
    assert near[5] == 0  # byte-identical: reported as 'duplicate', not twice
    assert near[6] >= 0.5 and near_of[6] == 2
    assert near[7] >= 0.5 and near_of[7] == 3
    assert near[8] >= 0.5 and near_of[8] == 0
    assert (near[[0, 1, 2, 3, 4, 9]] < 0.5).all()


def test_near_duplicate_search_scales_by_buckets():
    """50,000 random hashes with 100 planted copies 0-4 bits away: all found, nothing else."""
    rng = np.random.default_rng(2)
    hashes = rng.integers(0, 2 ** 63, size=50_000, dtype=np.int64).astype(np.uint64)
    copies = rng.choice(50_000, 100, replace=False)
    planted_hashes = hashes[copies].copy()
    for i in range(100):
        for bit in rng.choice(64, int(rng.integers(0, 5)), replace=False):
            planted_hashes[i] ^= np.uint64(1) << np.uint64(bit)
    all_hashes = np.concatenate([hashes, planted_hashes])
    score, original, distance = near_duplicates(all_hashes)
    assert (score[50_000:] >= 0.5).all() and (original[50_000:] == copies).all()
    assert (score[:50_000] == 0).all() and distance[50_000:].max() <= 4


def test_describer_measures_originals_and_batches():
    rng = np.random.default_rng(3)
    big = np.asarray(photo("astronaut", 1400))
    data = jpeg_bytes(big)
    original = decode_original(data)
    assert max(original.shape[:2]) == MAX_SIDE  # large originals are reduced
    small = decode_original(planted(photo("cat"), "small", rng))
    assert small.shape[:2] == (16, 24)  # small ones are never enlarged
    describer = QualityDescriber(threads=2)
    out = describer.describe([original, small, decoded(jpeg_bytes(np.asarray(photo("coffee", 200))))])["quality"]
    assert out.shape == (3, len(COLUMNS)) and out.dtype == np.float32
    assert out[1, COLUMNS.index("measured_width")] == 24
    batch = describer.describe(np.stack([np.asarray(photo("chelsea").resize((224, 224)))] * 2))["quality"]
    assert batch.shape == (2, len(COLUMNS)) and np.isfinite(batch[:, 1:]).all()
    assert describer.provenance()["columns"] == list(COLUMNS)


def test_a_relative_check_without_a_floor_survives_a_zero_mad():
    """Most crops of one size: with min_scale 0 the MAD is 0 and the std ranks the rest."""
    data = pd.DataFrame({"width": [224] * 30 + [200, 120], "height": [224] * 32})
    scores = create_check("small", mode="relative", min_scale=0.0).score(data)
    assert (scores[:30] == 0).all() and 0 < scores[30] < scores[31] < 1
