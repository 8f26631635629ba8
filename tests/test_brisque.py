"""BRISQUE in vehiclust against the PyPI ``brisque`` package as the reference.

The reference needs OpenCV and libsvm (``pip install brisque opencv-python-headless``, in the dev
extra); without them the comparison is skipped with that reason. vehiclust itself reads only the
package's two model files, never its code.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFilter

from vehiclust.quality import brisque as vb

PHOTOS = ("astronaut", "brick", "camera", "cat", "chelsea", "clock", "coffee", "coins", "colorwheel", "grass",
          "gravel", "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina", "rocket", "text")


def photographs() -> dict[str, np.ndarray]:
    from skimage import data

    out = {}
    for name in PHOTOS:
        try:
            image = np.asarray(getattr(data, name)())
        except Exception:  # a photograph this scikit-image does not bundle
            continue
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        out[name] = np.ascontiguousarray(image[..., :3]).astype(np.uint8)
    return out


def degraded_variants(image: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """The photograph and 11 degraded copies: blur, noise, JPEG, crops, brightness, combinations."""
    pil = Image.fromarray(image)
    side = int(rng.integers(180, 260))
    pil = pil.resize((side, max(24, round(side * pil.height / pil.width))), Image.Resampling.LANCZOS)
    base = np.asarray(pil)

    def jpeg(a, q):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, "JPEG", quality=q)
        return np.asarray(Image.open(buf).convert("RGB"))

    def noise(a, sigma):
        return np.clip(a + rng.normal(0, sigma, a.shape), 0, 255).astype(np.uint8)

    h, w = base.shape[:2]
    y0, x0 = int(rng.integers(0, h // 4)), int(rng.integers(0, w // 4))
    return [
        base,
        np.asarray(pil.filter(ImageFilter.GaussianBlur(float(rng.uniform(1.0, 2.0))))),
        np.asarray(pil.filter(ImageFilter.GaussianBlur(float(rng.uniform(3.0, 6.0))))),
        noise(base, rng.uniform(5, 12)),
        noise(base, rng.uniform(20, 40)),
        jpeg(base, int(rng.integers(30, 60))),
        jpeg(base, int(rng.integers(3, 12))),
        np.ascontiguousarray(base[y0:y0 + h // 2 + 8, x0:x0 + w // 2 + 8]),
        np.clip(base * rng.uniform(0.2, 0.5), 0, 255).astype(np.uint8),
        np.clip(base * rng.uniform(1.4, 2.2), 0, 255).astype(np.uint8),
        jpeg(noise(np.asarray(pil.filter(ImageFilter.GaussianBlur(1.5))), 8), 25),
    ]


def test_model_files_are_read_without_importing_the_package():
    files = vb.find_model_files()
    if files is None:
        pytest.skip("the 'brisque' package (which ships the trained model) is not installed")
    model = vb.BrisqueModel.from_files(*files)
    assert model.support_vectors.shape[1] == vb.N_FEATURES and len(model.coefficients) == len(model.support_vectors)
    assert model.gamma > 0 and (model.feature_max > model.feature_min).all()


def test_scores_are_nan_without_a_model(monkeypatch):
    photo = photographs()["chelsea"]
    monkeypatch.setattr(vb, "default_model", lambda: None)
    assert np.isnan(vb.brisque_score([photo])).all()
    features = vb.brisque_features(photo)
    assert features.shape == (36,) and np.isfinite(features).all()


def test_half_size_matches_a_bicubic_reduction():
    gray = vb.to_gray(photographs()["astronaut"], np.float64)[:301, :257]
    half = vb.half_size(gray)
    assert half.shape == (150, 128)  # OpenCV rounds half-to-even: 150.5 -> 150, 128.5 -> 128
    # the 4-tap filter on a linear ramp reproduces the ramp at the half-pixel positions
    ramp = np.tile(np.arange(40, dtype=np.float64), (10, 1))
    np.testing.assert_allclose(vb.half_size(ramp)[2, 1:-1], 2 * np.arange(1, 19) + 0.5, atol=1e-12)
    # the compiled loop is the numpy definition bit for bit, on odd and even sides down to one pixel
    rng = np.random.default_rng(0)
    for shape in ((301, 257), (1, 1), (1, 7), (2, 3), (5, 4), (16, 17)):
        for image in (gray[:shape[0], :shape[1]].astype(np.float32), rng.random(shape, dtype=np.float32)):
            assert np.array_equal(vb.half_size(image), vb.half_size_numpy(image)), shape


@pytest.mark.slow
def test_matches_the_reference_package_on_200_real_images():
    # brisque (and its libsvm) are dependencies and OpenCV a dev dependency: a missing one fails
    import brisque

    reference = brisque.BRISQUE(url=False)
    original = brisque.BRISQUE.calculate_brisque_features

    def flat(self, image, kernel_size=7, sigma=7 / 6):
        # brisque 0.2.0 returns 1-element arrays among its features, which numpy 2 refuses to
        # turn into floats; flatten them (the only change to the reference)
        return np.array([np.asarray(f, dtype=float).reshape(-1)[0]
                         for f in original(self, image, kernel_size, sigma)])

    reference.calculate_brisque_features = flat.__get__(reference)
    rng = np.random.default_rng(0)
    images = []
    for photo in photographs().values():
        images += degraded_variants(photo, rng)
    while len(images) < 200:  # more crops of the colour photographs if this scikit-image has fewer
        images += degraded_variants(photographs()["coffee"], rng)
    ours = vb.brisque_score(images)
    theirs = np.array([float(reference.score(im)) for im in images])
    assert len(images) >= 200 and np.isfinite(ours).all() and np.isfinite(theirs).all()
    r = np.corrcoef(ours, theirs)[0, 1]
    print(f"BRISQUE vs reference on {len(images)} images: Pearson r = {r:.5f}, "
          f"median |diff| = {np.median(np.abs(ours - theirs)):.4f}")
    assert r >= 0.99, r
    assert np.median(np.abs(ours - theirs)) < 0.05
    # and the score means what it should: heavy blur / noise / JPEG score worse than the photograph
    per_photo = np.array(theirs[: len(theirs) // 11 * 11]).reshape(-1, 11)
    assert (per_photo[:, 4] > per_photo[:, 0]).mean() > 0.8  # strong noise
    assert (per_photo[:, 6] > per_photo[:, 0]).mean() > 0.8  # JPEG quality < 12


def _numpy_moments(gray: np.ndarray) -> np.ndarray:
    m = vb.mscn(gray).astype(np.float64)
    out = []
    for x in (m, m[:, :-1] * m[:, 1:], m[:-1, :] * m[1:, :], m[:-1, :-1] * m[1:, 1:], m[1:, :-1] * m[:-1, 1:]):
        neg = np.minimum(x, 0.0)
        out.append([x.size, (x < 0).sum(), x.sum(), neg.sum(), (x * x).sum(), (neg * neg).sum()])
    return np.array(out)


def test_compiled_statistics_match_the_numpy_definition():
    from vehiclust.quality.kernels import mscn, mscn_moments

    window, c = vb._WINDOW.astype(np.float32), np.float32(vb.C)
    # the float64 numpy definition is the truth; float32 pixels cost both paths about 1e-3
    for image in photographs().values():
        gray = vb.to_gray(image)
        # the coefficients bit for bit, inside mscn_moments (called first: numba would give mscn
        # its caller's flags where mscn_moments compiles it) and alone; so the negative counts
        # equal exactly, rounding noise included
        moments, expected = mscn_moments(gray, window, c), _numpy_moments(gray)
        assert np.array_equal(moments[:, :2], expected[:, :2])
        np.testing.assert_allclose(moments[:, 2:], expected[:, 2:], rtol=1e-9, atol=1e-9)
        assert np.array_equal(mscn(gray, window, c), vb.mscn(gray))
        for scale in (gray, vb.half_size(gray)):
            truth = np.array(vb.scale_features_numpy(scale.astype(np.float64)))
            np.testing.assert_allclose(vb.scale_features(scale), truth, atol=5e-3)
    flat = np.full((20, 30), 0.5, np.float32)
    assert np.array_equal(np.isnan(vb.scale_features(flat)), np.isnan(vb.scale_features_numpy(flat)))
    smallest = np.random.default_rng(0).random((vb.MIN_SIDE, vb.MIN_SIDE), dtype=np.float32)
    np.testing.assert_allclose(vb.scale_features(smallest), vb.scale_features_numpy(smallest.astype(np.float64)),
                               atol=5e-3)
    smallest[5, 5] = np.nan  # a float image with a hole: no exception, and features no score is made from
    assert not np.isfinite(vb.brisque_features(smallest)).all()


def test_compiled_luma_and_colour_statistics_match_the_numpy_definitions():
    from vehiclust.quality import features, kernels

    rng = np.random.default_rng(0)
    images = []
    for photo in photographs().values():
        images += degraded_variants(photo, rng)[:4]
    # the edges of every rule: too small for the Laplacian and the noise, for blockiness along
    # one axis or both, for the colour step; flat, black, white
    images += [rng.integers(0, 256, shape + (3,), dtype=np.uint8)
               for shape in ((1, 1), (2, 5), (3, 3), (23, 65), (70, 25), (24, 24), (33, 40), (63, 200))]
    images += [np.full((40, 30, 3), v, np.uint8) for v in (0, 128, 255)]
    for image in images:
        gray = vb.to_gray(image)
        gray8, histogram, luma = kernels.luma_statistics(gray)
        luma = dict(zip(kernels.LUMA_STATISTICS, luma))
        expected8 = np.clip(gray * 255.0 + 0.5, 0, 255).astype(np.uint8)
        assert np.array_equal(gray8, expected8)
        assert np.array_equal(histogram, np.bincount(expected8.ravel(), minlength=256))
        contrast = float(gray.std())
        np.testing.assert_allclose([luma["brightness"], luma["contrast"]], [gray.mean(), contrast], atol=1e-6)
        measured, _ = features.measure(image, with_brisque=False)
        got = dict(zip(features.COLUMNS, measured))
        step = 2 if min(image.shape[:2]) >= 64 else 1
        expected = dict(zip(("colourfulness", "chroma", "saturation"),
                            features.colour_numpy(image[::step, ::step].astype(np.float32))),
                        sharpness=features.laplacian_ratio_numpy(gray, contrast),
                        blockiness=features.blockiness_numpy(gray))
        for name, value in expected.items():
            np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-6, err_msg=f"{name} of {image.shape}")
        # the residuals in numpy's order, so the median picks the same one: equal, not close
        assert np.array_equal(got["noise"], features.noise_sigma_numpy(gray), equal_nan=True), image.shape


def test_the_compiled_loops_work_where_no_cache_folder_can_be_written(monkeypatch):
    import importlib

    import numba

    from vehiclust.quality import kernels

    njit = numba.njit

    def no_cache_folder(*args, **options):  # what numba raises when it finds no folder to write in
        if options.get("cache"):
            raise RuntimeError("cannot cache function 'mscn': no locator available for file 'kernels.py'")
        return njit(*args, **options)

    monkeypatch.setattr(numba, "njit", no_cache_folder)
    try:
        uncached = importlib.reload(kernels)
        gray = vb.to_gray(photographs()["coins"])
        moments = uncached.mscn_moments(gray, vb._WINDOW.astype(np.float32), np.float32(vb.C))
        assert np.array_equal(moments[:, :2], _numpy_moments(gray)[:, :2])
    finally:
        monkeypatch.undo()
        importlib.reload(kernels)
