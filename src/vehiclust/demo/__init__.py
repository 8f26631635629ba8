"""The first-run demo: a small VeRi-Wild-like collection built from real photographs.

``build_demo(out_dir, size, seed)`` writes, deterministically for a seed::

    out_dir/images/<5-digit vehicle id>/<6-digit image id>.jpg
    out_dir/images/vehicle_info.txt      id/image;Camera ID;Time;Model;Type;Color
    out_dir/ground_truth.csv             one row per image (the pipeline never reads it itself)

What the pictures are made of (fetched at first use from Debian's package archive with
``apt-get download``, then cached; see :mod:`vehiclust.demo.sources`):

* vehicles: the photographic cut-outs of real vehicles in ``tuxpaint-stamps-default`` (sedan,
  VW beetle, convertible, pickup, city bus, garbage truck, fire engine, wheeled army vehicle);
* distractors: its photographs of animals, food and plants (drawings are left out);
* backgrounds: landscape photographs of Debian wallpaper packages; the road surface is
  scikit-image's bundled gravel photograph.

How a capture is made: one *identity* (vehicle id) is one source cut-out in one body colour. The
body paint (the dominant saturated hue of the cut-out at mid lightness) is repainted in a named
colour (white, black, gray, silver, red, blue, green, yellow, orange, brown) keeping the original
shading, glass, tyres, chrome and reflections; fire engine, garbage truck and army vehicle keep
their own colour.  Each identity is seen 10-30 times by traffic cameras; each camera has its own
region of a background photograph, tarmac tone, lane marking, colour cast, lens softness, noise
and JPEG quality.  A capture scales the vehicle to a few hundred pixels, mirrors it or not, adds a
slight perspective and tilt, lays it on the camera's road with a soft contact shadow, matches it to
the scene's ambient colour, then renders day, dusk (darker, warm, flatter) or night (dark, bluish or
sodium-orange, headlight and street-lamp glare), lens blur, signal-dependent sensor noise and JPEG
(quality 60-95).  The crop is a detector-style box: the vehicle fills most of it.

Outliers (a few percent each, marked in the ground truth's ``outlier_kind``): ``no_vehicle``
(animals, food, plants, or empty road: Type/Color ``none`` in vehicle_info.txt; they sit in some
vehicle's folder, as a tracker's false detection would), ``blurry``, ``motion_blur``, ``dark``,
``overexposed``, ``noisy``, ``small`` (< 40 px), ``truncated`` (most of the vehicle out of the box),
``duplicate`` (byte-identical copy of another image of the same vehicle) and ``near_duplicate``
(re-encoded at a slightly different quality and/or shifted by 1-2 px).

Limits: every source photograph is a side view, so there are no front or rear views (which most
VeRi-Wild images are): side photographs cannot be turned into them.  There are only eight vehicle
photographs, so many identities share a model and colour and differ only by a slightly different
shade: re-identification between such identities is not really possible from the pixels.  Where
apt is not available, a small fallback set is made from scikit-image's bundled photographs (one
motorcycle), with a warning: a valid collection with ground truth, but not VeRi-Wild-like.
"""

from .build import DemoCollection, build_demo, load_ground_truth
from .case_bundle import write_case_bundle
from .contact import write_contact_sheet

__all__ = ["DemoCollection", "build_demo", "load_ground_truth", "write_case_bundle", "write_contact_sheet"]
