"""Image operations of the demo generator: recolouring, cameras, compositing and degradations.

Everything works on small float32 arrays at output resolution (a few hundred pixels a side) so a
capture renders in a few milliseconds.  All randomness comes from the ``numpy`` generator passed
in, so a capture is a pure function of its spec.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy import ndimage

from .sources import Background, Cutout

# ----------------------------------------------------------------------------------------------
# colours

# Named body colours: base sRGB in [0,1] and how often real traffic shows them.
PALETTE: dict[str, tuple[tuple[float, float, float], float]] = {
    "white": ((0.92, 0.92, 0.91), 0.24),
    "black": ((0.055, 0.058, 0.065), 0.17),
    "gray": ((0.40, 0.41, 0.42), 0.12),
    "silver": ((0.68, 0.69, 0.71), 0.12),
    "red": ((0.66, 0.05, 0.05), 0.09),
    "blue": ((0.07, 0.20, 0.58), 0.09),
    "green": ((0.08, 0.38, 0.15), 0.04),
    "yellow": ((0.93, 0.76, 0.08), 0.03),
    "orange": ((0.93, 0.40, 0.05), 0.03),
    "brown": ((0.36, 0.21, 0.10), 0.07),
}


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """Vectorised RGB (..., 3) in [0,1] -> HSV with hue in [0,1)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    mx = rgb.max(-1)
    mn = rgb.min(-1)
    d = mx - mn
    s = np.where(mx > 1e-6, d / np.maximum(mx, 1e-6), 0.0)
    dd = np.maximum(d, 1e-6)
    h = np.where(mx == r, ((g - b) / dd) % 6.0, np.where(mx == g, (b - r) / dd + 2.0, (r - g) / dd + 4.0))
    h = np.where(d > 1e-6, h / 6.0, 0.0)
    return np.stack([h, s, mx], -1).astype(np.float32)


def hue_distance(h: np.ndarray, h0: float) -> np.ndarray:
    d = np.abs(h - h0)
    return np.minimum(d, 1.0 - d)


def identity_shade(colour: str, rng: np.random.Generator) -> np.ndarray:
    """The exact paint of one vehicle: the named colour with a small, still-nameable variation."""
    base = np.array(PALETTE[colour][0], np.float32)
    if colour in ("white", "black", "gray", "silver"):
        v = rng.uniform(-0.035, 0.035)
        tint = rng.uniform(-0.012, 0.012, 3)
        out = base + v + tint
    else:
        out = base * rng.uniform(0.88, 1.1) + rng.uniform(-0.025, 0.025, 3) * base.max()
    return np.clip(out, 0.02, 0.97).astype(np.float32)


@dataclass
class VehicleModel:
    """A vehicle cut-out prepared once: float RGBA, paint mask and luminance reference."""

    name: str
    source: str
    rgba: np.ndarray  # float32 HxWx4 in [0,1]
    paint: np.ndarray  # float32 HxW, 1 = body paint
    luma_ref: float
    meta: dict
    lamp_y: float  # headlight height as a fraction of the height


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def paint_mask(rgba: np.ndarray, min_sat: float = 0.16, hue_tol: float = 0.085) -> np.ndarray:
    """Soft mask of the body paint: the dominant saturated hue of the vehicle, mid lightness.

    Glass (dark or grey), tyres, chrome, lights and shadows are left out: they are not saturated
    or not of the body hue.
    """
    rgb = rgba[..., :3]
    a = rgba[..., 3]
    hsv = rgb_to_hsv(rgb)
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    sel = (a > 0.5) & (s > 0.35) & (v > 0.2)
    if sel.sum() < 50:
        return np.zeros(a.shape, np.float32)
    hist = np.bincount((h[sel] * 72).astype(int) % 72, minlength=72).astype(np.float32)
    hist = hist + np.roll(hist, 1) + np.roll(hist, -1)
    h0 = (hist.argmax() + 0.5) / 72.0
    w_h = np.clip((hue_tol - hue_distance(h, h0)) / 0.035, 0, 1)
    w_s = np.clip((s - min_sat) / 0.14, 0, 1)
    w_v = np.clip((v - 0.07) / 0.08, 0, 1)
    m = w_h * w_s * w_v * np.clip((a - 0.3) / 0.5, 0, 1)
    # drop isolated specks (stickers, lights) and fill pin-holes in the panels
    m = ndimage.grey_closing(m, size=(3, 3))
    return m.astype(np.float32)


def prepare_vehicle(cut: Cutout) -> VehicleModel:
    rgba = cut.rgba.astype(np.float32) / 255.0
    recolourable = cut.meta.get("colour") is None
    paint = (paint_mask(rgba, cut.meta.get("paint_min_sat", 0.16), cut.meta.get("paint_hue_tol", 0.085))
             if recolourable
             else np.zeros(rgba.shape[:2], np.float32))
    y = _luma(rgba[..., :3])
    sel = paint > 0.7
    luma_ref = float(np.median(y[sel])) if sel.sum() > 20 else 0.5
    # headlight height: middle of the lower half of the front-most opaque columns
    a = rgba[..., 3] > 0.5
    cols = np.where(a.any(0))[0]
    front = cols[-max(2, len(cols) // 25):] if cut.meta.get("facing") == "right" else cols[: max(2, len(cols) // 25)]
    rows = np.where(a[:, front].any(1))[0]
    lamp_y = (rows.min() + 0.65 * (rows.max() - rows.min())) / a.shape[0] if len(rows) else 0.6
    return VehicleModel(cut.name, cut.source, rgba, paint, max(luma_ref, 0.05), dict(cut.meta), float(lamp_y))


def recolour(model: VehicleModel, target_rgb: np.ndarray) -> np.ndarray:
    """Repaint the body of ``model`` in ``target_rgb``; returns float32 RGBA.

    The shading of the original paint (ratio of each pixel's luminance to the body's median)
    is kept: darker-than-median pixels scale the new paint down, brighter ones blend it towards
    white (reflections).  Unpainted pixels are untouched.
    """
    rgba = model.rgba
    m = model.paint
    if not m.any():
        return rgba.copy()
    rgb = rgba[..., :3]
    s = (_luma(rgb) / model.luma_ref)[..., None]
    t = np.asarray(target_rgb, np.float32)[None, None, :]
    t_l = float(_luma(t.reshape(1, 3))[0])
    # reflections: brighter-than-median parts blend towards white, reaching it where the
    # original reached white
    up = np.clip((s - 1.0) / max(1.0 / model.luma_ref - 1.0, 1e-3), 0, 1)
    gain = np.where(s <= 1.0, s ** (0.8 if t_l > 0.5 else 1.0), 1.0)
    new = np.where(s <= 1.0, t * gain, t + (1.0 - t) * up * 0.85)
    out = rgba.copy()
    out[..., :3] = rgb * (1 - m[..., None]) + new * m[..., None]
    return out


def sky_light(rgba: np.ndarray, strength: float = 0.18) -> np.ndarray:
    """Light from the sky: the roof a little brighter, the lower panels (occluded by the body
    and facing the road) darker, as in outdoor photographs."""
    h = rgba.shape[0]
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    gain = 1.0 + strength * (0.25 - np.clip((t - 0.35) / 0.65, 0, 1) ** 1.5)
    out = rgba.copy()
    out[..., :3] = np.clip(out[..., :3] * gain, 0, 1)
    return out


def cutout_images(rgba: np.ndarray, soften: float = 0.7) -> tuple[Image.Image, Image.Image]:
    """Premultiplied ("RGBa") PIL cut-out, alpha eroded by a pixel against fringes, and its mirror."""
    im = Image.fromarray((np.clip(rgba, 0, 1) * 255 + 0.5).astype(np.uint8), "RGBA")
    im.putalpha(im.getchannel("A").filter(ImageFilter.MinFilter(3)))
    # lens softness, applied once at the working resolution (premultiplied: no dark fringes)
    im = im.convert("RGBa").filter(ImageFilter.GaussianBlur(soften))
    return im, im.transpose(Image.FLIP_LEFT_RIGHT)


# ----------------------------------------------------------------------------------------------
# cameras


@dataclass
class Camera:
    cam_id: int
    background: str  # source of its background photograph
    scene: Image.Image  # RGB: this camera's region of the background photograph
    road: Image.Image  # RGB: its tarmac (tone x real gravel texture), larger than any crop
    road_frac: float  # how far above the wheels the road surface ends, in vehicle heights
    road_tilt: float
    lane: tuple | None  # (rgb uint8, thickness frac, dashed, in_front)
    cast: np.ndarray  # per-channel gain
    saturation: float
    haze: float
    optics_blur: float
    noise: float
    quality: int
    crop_width: float  # typical vehicle width in output pixels
    sun: float  # horizontal offset of the cast shadow, in vehicle widths
    sodium: bool  # orange street lighting at night


_SCENE_SIZE = (512, 320)
_MAX_VEHICLE_W = 440


def make_camera(cam_id: int, bg: Background, road_texture: np.ndarray, rng: np.random.Generator) -> Camera:
    H, W = bg.rgb.shape[:2]
    cw = int(W * rng.uniform(0.32, 0.7))
    ch = int(min(H * 0.95, cw / 1.6))
    x0 = int(rng.uniform(0, W - cw))
    y0 = int(rng.uniform(0, H - ch))
    scene = Image.fromarray(bg.rgb).resize(_SCENE_SIZE, Image.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch))
    if rng.random() < 0.5:
        scene = scene.transpose(Image.FLIP_LEFT_RIGHT)
    scene = scene.filter(ImageFilter.GaussianBlur(rng.uniform(0.8, 2.0)))  # out of focus behind the road
    # tarmac: the gravel photograph shrunk (fine grain), squashed by perspective, mirror-tiled
    th, tw = road_texture.shape
    t = Image.fromarray(road_texture.astype(np.float32), "F")
    t = t.resize((int(tw * rng.uniform(0.55, 0.8)), int(th * rng.uniform(0.35, 0.5))), Image.BOX)
    t = np.asarray(t)
    t = np.concatenate([t, t[:, ::-1]], 1)
    t = np.concatenate([t, t[::-1]], 0)
    reps = (int(np.ceil(560 / t.shape[0])), int(np.ceil(640 / t.shape[1])))
    t = np.tile(t, reps)[:560, :640]
    gray = float(rng.uniform(0.24, 0.48))
    road_rgb = np.clip(gray * (1 + rng.uniform(-0.04, 0.04, 3)), 0, 1).astype(np.float32)
    amp = float(rng.uniform(0.04, 0.09))
    yy = np.linspace(0.95, 1.04, t.shape[0], dtype=np.float32)[:, None]  # nearer tarmac a bit lighter
    road = (1.0 + amp * t) * yy
    road = Image.fromarray(np.clip(road[..., None] * road_rgb * 255 + 0.5, 0, 255).astype(np.uint8))
    road = road.filter(ImageFilter.GaussianBlur(0.5))
    lane = None
    if rng.random() < 0.65:
        col = (220, 220, 210) if rng.random() < 0.7 else (220, 178, 46)
        lane = (col, float(rng.uniform(0.012, 0.03)), bool(rng.random() < 0.5), bool(rng.random() < 0.3))
    return Camera(
        cam_id=cam_id,
        background=bg.source,
        scene=scene,
        road=road,
        road_frac=float(rng.uniform(0.3, 0.85)),
        road_tilt=float(rng.uniform(-0.05, 0.05)),
        lane=lane,
        cast=(1 + rng.uniform(-0.07, 0.07, 3)).astype(np.float32),
        saturation=float(rng.uniform(0.72, 1.0)),
        haze=float(rng.uniform(0.0, 0.06)),
        optics_blur=float(rng.uniform(0.45, 1.1)),
        noise=float(rng.uniform(0.008, 0.02)),
        quality=int(rng.integers(66, 90)),
        crop_width=float(rng.uniform(150, 300)),
        sun=float(rng.uniform(-0.08, 0.08)),
        sodium=bool(rng.random() < 0.4),
    )


# ----------------------------------------------------------------------------------------------
# compositing helpers (PIL for the pixel work, numpy only on small regions)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0, 1)
    return x * x * (3 - 2 * x)


def _background(cam: Camera, W: int, H: int, ground_y: float, veh_h: float, night: bool,
                rng: np.random.Generator) -> Image.Image:
    """Camera scene behind and tarmac below (RGB)."""
    sw, sh = _SCENE_SIZE
    if W <= sw and H <= sh:  # the camera's scene at its own scale: a window of it
        bx, by = int(rng.integers(0, sw - W + 1)), int(rng.integers(0, sh - H + 1))
        img = cam.scene.crop((bx, by, bx + W, by + H))
    else:
        scale = max(W / sw, H / sh)
        bw, bh = W / scale, H / scale
        bx, by = rng.uniform(0, sw - bw), rng.uniform(0, sh - bh)
        img = cam.scene.resize((W, H), Image.BILINEAR, box=(bx, by, bx + bw, by + bh))
    if night:  # the scene falls dark faster than the lit road and vehicle
        f = rng.uniform(0.4, 0.65)
        img = img.point([int(v * f) for v in range(256)] * 3)
    rw, rh = cam.road.size
    road = cam.road if (W <= rw and H <= rh) else cam.road.resize((max(W, rw), max(H, rh)))
    rw, rh = road.size
    tx, ty = int(rng.integers(0, rw - W + 1)), int(rng.integers(0, rh - H + 1))
    road = road.crop((tx, ty, tx + W, ty + H))
    if cam.lane is not None:
        col, thick, dashed, in_front = cam.lane
        ly = ground_y + (rng.uniform(0.06, 0.16) * veh_h if in_front else -rng.uniform(0.1, 0.25) * veh_h)
        t = max(1.5, thick * H) / 2
        dy = cam.road_tilt * W / 2
        draw = ImageDraw.Draw(road)
        if dashed:
            period = rng.uniform(0.5, 0.9) * W
            x = -rng.uniform(0, period)
            while x < W:
                x1 = x + 0.55 * period
                y0, y1 = ly + cam.road_tilt * (x - W / 2), ly + cam.road_tilt * (x1 - W / 2)
                draw.polygon([(x, y0 - t), (x1, y1 - t), (x1, y1 + t), (x, y0 + t)], fill=col)
                x += period
        else:
            draw.polygon([(0, ly - dy - t), (W, ly + dy - t), (W, ly + dy + t), (0, ly - dy + t)], fill=col)
    # where the road surface ends behind the vehicle: a soft, slightly tilted edge
    horizon = ground_y - cam.road_frac * veh_h * rng.uniform(0.85, 1.15)
    yy = np.arange(H, dtype=np.float32)[:, None]
    xx = np.arange(W, dtype=np.float32)[None, :]
    edge = max(2.0, 0.04 * H)
    m = _smoothstep((yy - horizon - cam.road_tilt * (xx - W / 2)) / edge + 0.5)
    img.paste(road, (0, 0), Image.fromarray((m * 255 + 0.5).astype(np.uint8), "L"))
    return img


def _place_cutout(im: Image.Image, width: int, height: int, rng: np.random.Generator,
                  warp: float = 1.0) -> tuple[Image.Image, int]:
    """Scale a premultiplied PIL cut-out to (width, height) with a slight perspective and tilt.

    Returns the RGBA result and the padding added above and below (room for the tilt).
    """
    f = int(im.width / width)
    if f >= 2:
        im = im.reduce(f)
    sx, sy = im.width / width, im.height / height
    pad = int(0.04 * height * warp) + 1
    k = 1.0 - abs(rng.normal(0, 0.035)) * warp  # far end of the vehicle a little smaller
    d = height * (1.0 / k - 1.0) / 2
    tilt = width * np.tan(np.radians(rng.normal(0, 1.0) * warp))
    dl, dr = (d, 0.0) if rng.random() < 0.5 else (0.0, d)
    tl, tr = -tilt / 2, tilt / 2
    quad = (
        0.0, (-pad - dl + tl) * sy,
        0.0, (height + pad + dl + tl) * sy,
        width * sx, (height + pad + dr + tr) * sy,
        width * sx, (-pad - dr + tr) * sy,
    )
    out = im.transform((width, height + 2 * pad), Image.QUAD, quad, Image.BILINEAR)
    return out.convert("RGBA"), pad


def _contact_shadow(img: Image.Image, alpha: Image.Image, ox: int, oy: int, strength: float, sun: float,
                    rng: np.random.Generator) -> Image.Image:
    """Darken the ground under an object whose alpha is placed at (ox, oy): occlusion right under
    the body and between the wheels, plus a soft cast shadow.  Returns the new image."""
    W, H = img.size
    bbox = alpha.point(lambda v: 255 if v > 128 else 0).getbbox()
    if bbox is None:
        return img
    w, h = bbox[2] - bbox[0], bbox[3] - bbox[1]
    x0, x1 = ox + bbox[0], ox + bbox[2] - 1
    bottom = oy + bbox[3] - 1
    y_lo = int(max(0, bottom - 0.35 * h))
    y_hi = int(min(H, bottom + 0.12 * h + 3))
    if y_hi <= y_lo:
        return img
    yy = np.arange(y_lo, y_hi, dtype=np.float32)[:, None]
    xx = np.arange(W, dtype=np.float32)[None, :]
    shift = sun * w
    inset = 0.03 * w
    # umbra: dark band between and just under the wheels, fading at the ends and downwards
    horiz = _smoothstep((xx - (x0 + inset + shift)) / (0.04 * w + 1)) * _smoothstep(((x1 - inset + shift) - xx) / (0.04 * w + 1))
    vert = np.minimum(np.clip(1.0 - (yy - bottom) / (0.045 * h + 1.5), 0, 1),
                      _smoothstep((yy - (bottom - 0.3 * h)) / (0.1 * h + 1)))
    # penumbra: a wider, softer blob (separable)
    cx, rx = (x0 + x1) / 2 + shift * 1.5, w / 2 * rng.uniform(1.0, 1.08)
    ry = 0.07 * h + 2
    gx = np.exp(-np.maximum(((xx - cx) / rx) ** 2 - 0.6, 0) * 2.5)
    gy = np.exp(-(((yy - bottom) / ry) ** 2) * 2.5)
    dark = np.clip(0.85 * vert * horiz + 0.35 * gy * gx, 0, 1) * (strength * 255)
    mask = np.zeros((H, W), np.uint8)
    mask[y_lo:y_hi] = (dark + 0.5).astype(np.uint8)
    return Image.composite(Image.new("RGB", img.size), img, Image.fromarray(mask, "L"))


def _glow(img: np.ndarray, cx: float, cy: float, r: float, rgb, strength: float, aspect: float = 1.0) -> None:
    """Add a Gaussian light (0..1 units) to a float image, in place."""
    H, W = img.shape[:2]
    r = max(r, 1.0)
    x0, x1 = int(max(0, cx - 3.5 * r * aspect)), int(min(W, cx + 3.5 * r * aspect + 1))
    y0, y1 = int(max(0, cy - 3.5 * r)), int(min(H, cy + 3.5 * r + 1))
    if x1 <= x0 or y1 <= y0:
        return
    yy = np.arange(y0, y1, dtype=np.float32)[:, None]
    xx = np.arange(x0, x1, dtype=np.float32)[None, :]
    g = np.exp(-(((xx - cx) / aspect) ** 2 + (yy - cy) ** 2) / (2 * r * r)) * strength
    img[y0:y1, x0:x1] += g[..., None] * np.asarray(rgb, np.float32)[None, None, :]


_LUMA_W = np.array([0.299, 0.587, 0.114], np.float32)


def _grade_matrix(gain: float, tint: np.ndarray, sat: float, contrast: float, haze: float) -> tuple:
    """PIL colour matrix (12 numbers, offsets in 0..255) for tint, saturation, contrast, exposure
    and haze; output channel i = sum_j M[j, i] x_j + b_i."""
    T = np.diag(tint).astype(np.float64)
    # row vectors: x @ S = sat * x + (1 - sat) * luma(x) in every channel
    S = sat * np.eye(3) + (1 - sat) * np.outer(_LUMA_W, np.ones(3))
    M = T @ S * contrast
    b = np.full(3, 0.45 * (1 - contrast))
    M, b = M * gain, b * gain
    M, b = M * (1 - haze), b * (1 - haze) + haze
    out = []
    for i in range(3):
        out += [M[0, i], M[1, i], M[2, i], b[i] * 255.0]
    return tuple(float(v) for v in out)


_NOISE: dict = {}
_NOISE_SIZE = 640


def _noise_field() -> np.ndarray:
    """Per-process field of Gaussian sensor noise (unit luminance noise plus half as much colour
    noise at half resolution), made once with a fixed seed; captures take random windows of it."""
    if not _NOISE:
        g = np.random.default_rng(0x5EED)
        lum = g.standard_normal((_NOISE_SIZE, _NOISE_SIZE, 1), dtype=np.float32)
        c = g.standard_normal((_NOISE_SIZE // 2, _NOISE_SIZE // 2, 3), dtype=np.float32) * 0.5
        _NOISE["f"] = lum + np.repeat(np.repeat(c, 2, 0), 2, 1)
    return _NOISE["f"]


def _noise_window(field: np.ndarray, H: int, W: int, rng: np.random.Generator) -> np.ndarray:
    n = field.shape[0]
    if H > n or W > n:
        reps = (int(np.ceil(H / n)), int(np.ceil(W / n)), 1)
        return np.tile(field, reps)[:H, :W]
    y, x = int(rng.integers(0, n - H + 1)), int(rng.integers(0, n - W + 1))
    return field[y:y + H, x:x + W]


_SHOT = (np.sqrt(np.arange(256, dtype=np.float32) / 255.0) * 0.6 + 0.4) * 255.0


# ----------------------------------------------------------------------------------------------
# capture


@dataclass
class Capture:
    """What one rendered image shows (used for ground truth)."""

    width: int
    height: int
    quality: int
    mirrored: bool


def render_capture(
    cam: Camera,
    obj: tuple[Image.Image, Image.Image] | None,
    rng: np.random.Generator,
    *,
    time_of_day: str,
    outlier: str = "",
    facing: str = "right",
    lamp_y: float = 0.6,
    is_vehicle: bool = True,
) -> tuple[bytes, Capture]:
    """Render one traffic-camera crop of ``obj`` (cut-out and its mirror image; None = empty road).

    Returns the JPEG bytes and a :class:`Capture` record.
    """
    night, dusk = time_of_day == "night", time_of_day == "dusk"
    mirror = bool(rng.random() < 0.5)
    # --- geometry: object size and the detector-style margins around it
    if obj is not None:
        src = obj[1] if mirror else obj[0]
        aspect = src.height / src.width
        vw = cam.crop_width * rng.uniform(0.75, 1.25)
        vw = min(vw, src.width * 2.0, _MAX_VEHICLE_W)
        if not is_vehicle:
            vw = min(vw, 260) * rng.uniform(0.6, 1.0)
        vw = max(int(vw), 48)
        vh = max(int(vw * aspect * rng.uniform(0.92, 1.1)), 16)
        placed, pad = _place_cutout(src, vw, vh, rng, warp=1.0 if is_vehicle else 0.3)
    else:
        vw = max(int(cam.crop_width * rng.uniform(0.75, 1.25)), 60)
        vh = int(vw * rng.uniform(0.3, 0.6))
        placed, pad = None, 0
    ml = int(vw * rng.uniform(0.02, 0.09))
    mr = int(vw * rng.uniform(0.02, 0.09))
    mt = int(vh * rng.uniform(0.05, 0.2))
    mb = int(vh * rng.uniform(0.04, 0.13))
    W, H = vw + ml + mr, vh + mt + mb
    ground_y = mt + vh * 0.98

    img = _background(cam, W, H, ground_y, vh, night, rng)
    if placed is not None:
        alpha = placed.getchannel("A")
        img = _contact_shadow(img, alpha, ml, mt - pad, 0.75 if time_of_day == "day" else 0.5, cam.sun, rng)
        # ambient match: tint the object slightly towards the scene's average colour
        amb = np.asarray(img.reduce(4), np.float32).reshape(-1, 3).mean(0) + 1.0
        amb = (amb / amb.mean()) ** 0.2 * rng.uniform(0.9, 1.04)
        amb = [float(v) for v in amb]
        rgb = placed.convert("RGB").convert("RGB", (amb[0], 0, 0, 0, 0, amb[1], 0, 0, 0, 0, amb[2], 0))
        img.paste(rgb, (ml, mt - pad), alpha)

    # --- time of day and camera colour, as one colour matrix
    if night:
        gain = rng.uniform(0.3, 0.5)
        tint = np.array((1.22, 0.92, 0.55) if cam.sodium else (0.8, 0.92, 1.2), np.float32)
        sat, contrast = 0.55, 1.1
    elif dusk:
        gain = rng.uniform(0.5, 0.7)
        tint = np.array((1.08, 0.9, 0.8), np.float32)
        sat, contrast = 0.8, 0.9
    else:
        gain = rng.uniform(0.92, 1.1)
        tint = np.array((1.0, 1.0, 0.98), np.float32)
        sat, contrast = 1.0, 1.0
    haze = cam.haze * (0.4 if night else 1.0)
    if outlier == "dark":
        gain *= rng.uniform(0.05, 0.11)
    elif outlier == "overexposed":
        gain *= rng.uniform(1.8, 2.6)
        sat *= 0.6
        haze = rng.uniform(0.15, 0.3)
    img = img.convert("RGB", _grade_matrix(gain, tint * cam.cast, sat * cam.saturation, contrast, haze))
    if outlier == "overexposed":
        img = img.point([int(255 * (v / 255) ** 0.6 + 0.5) for v in range(256)] * 3)

    if night and outlier != "overexposed":
        # headlights, tail lights, their glare on the road, and a street lamp or two
        f = np.asarray(img, np.float32) * (1.0 / 255.0)
        if placed is not None and is_vehicle:
            front_right = (facing == "right") != mirror
            fx = ml + (vw * 0.985 if front_right else vw * 0.015)
            rx = ml + (vw * 0.015 if front_right else vw * 0.985)
            ly = mt + vh * lamp_y
            r = max(2.0, vw * rng.uniform(0.022, 0.04))
            _glow(f, fx, ly, r, (1.0, 0.95, 0.8), rng.uniform(1.2, 2.2))
            _glow(f, fx, ly, r * 4, (1.0, 0.9, 0.7), rng.uniform(0.12, 0.3))
            _glow(f, fx + (1 if front_right else -1) * r * 4, ground_y + r, r * 2.5, (0.9, 0.85, 0.7),
                  rng.uniform(0.12, 0.25), aspect=3.0)
            _glow(f, rx, ly - vh * 0.05, r * 0.7, (1.0, 0.12, 0.05), rng.uniform(0.5, 1.0))
        for _ in range(int(rng.integers(0, 3))):
            _glow(f, rng.uniform(0, W), rng.uniform(0, max(2, mt + vh * 0.3)), rng.uniform(2, 7),
                  (1.0, 0.7, 0.35), rng.uniform(0.5, 1.2))
        img = Image.fromarray((np.clip(f, 0, 1) * 255 + 0.5).astype(np.uint8))

    # --- out-of-focus and motion blur (ordinary lens softness is in the scene and the cut-out)
    if outlier == "blurry":
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(4.5, 8.0) * (W / 260) ** 0.5))
    elif cam.optics_blur > 0.9:  # the softer cameras
        img = img.filter(ImageFilter.BoxBlur(0.6))
    if outlier == "motion_blur":
        L = max(9, int(W * rng.uniform(0.07, 0.15)))
        a = ndimage.uniform_filter1d(np.asarray(img), size=L, axis=1, mode="nearest")
        if rng.random() < 0.5:
            a = ndimage.uniform_filter1d(a, size=max(2, L // 6), axis=0, mode="nearest")
        img = Image.fromarray(a)

    # --- truncation: the detector box only holds a small part of the vehicle
    if outlier == "truncated":
        cw = max(12, int(ml + vw * rng.uniform(0.22, 0.42)))
        y0, y1 = 0, H
        if rng.random() < 0.4:
            cut = int(H * rng.uniform(0.1, 0.3))
            y0, y1 = (cut, H) if rng.random() < 0.5 else (0, H - cut)
        img = img.crop((0, y0, cw, y1)) if rng.random() < 0.5 else img.crop((W - cw, y0, W, y1))
        W, H = img.size

    # --- sensor noise (signal dependent, with some colour noise), quantisation, JPEG
    sigma = cam.noise * (2.0 if night else 1.4 if dusk else 1.0)
    if outlier == "dark":
        sigma *= 1.3
    if outlier == "noisy":
        sigma = rng.uniform(0.12, 0.2)
    shot = _SHOT[np.asarray(img.convert("L"))][..., None] * sigma
    a = _noise_window(_noise_field(), H, W, rng) * shot
    a += np.asarray(img, np.float32)
    a += 0.5
    np.clip(a, 0, 255, out=a)
    out = Image.fromarray(a.astype(np.uint8))

    if outlier == "small":
        s = rng.uniform(16, 38) / max(W, H)
        out = out.resize((max(4, round(W * s)), max(4, round(H * s))), Image.BOX)
    quality = int(np.clip(cam.quality + rng.integers(-6, 7), 60, 95))
    buf = io.BytesIO()
    out.save(buf, format="JPEG", quality=quality)
    return buf.getvalue(), Capture(out.size[0], out.size[1], quality, mirror)


def near_duplicate(jpeg: bytes, quality: int, rng: np.random.Generator) -> tuple[bytes, int]:
    """A tiny re-encode and/or 1-2 pixel shift of an existing JPEG (saved at ``quality``).

    Returns the new JPEG and its quality."""
    im = Image.open(io.BytesIO(jpeg)).convert("RGB")
    mode = int(rng.integers(0, 3))
    if mode in (1, 2):
        a = np.asarray(im)
        dx, dy = (int(v) for v in rng.integers(-2, 3, 2))
        if dx == 0 and dy == 0:
            dx = 1
        a = np.roll(a, (dy, dx), axis=(0, 1))
        # replicate the edge instead of wrapping around
        if dy > 0:
            a[:dy] = a[dy:dy + 1]
        elif dy < 0:
            a[dy:] = a[dy - 1:dy]
        if dx > 0:
            a[:, :dx] = a[:, dx:dx + 1]
        elif dx < 0:
            a[:, dx:] = a[:, dx - 1:dx]
        im = Image.fromarray(np.ascontiguousarray(a))
    q = quality
    if mode in (0, 2):
        q = int(np.clip(q + rng.choice([-6, -4, -3, 3, 4, 6]), 60, 95))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=q)
    data = buf.getvalue()
    if data == jpeg:  # the re-encode happened to be lossless: shift instead
        return near_duplicate(jpeg, quality + 1 if quality < 95 else quality - 1, rng)
    return data, q
