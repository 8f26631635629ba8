"""Small rules that several stages apply, each written once here.

- :func:`day_night`: which capture hours count as day;
- :func:`joint_label`: the joint label of several columns (``type+color`` -> ``"suv/white"``);
- :func:`sha256_file`: the hex sha256 of a file.

"Is this descriptor current?" lives with the descriptors (``vehiclust.describe``), the best
clustering with its artifact (``vehiclust.runfolder.load_best``).
"""

from __future__ import annotations

import hashlib
import os
from functools import reduce

import pandas as pd

# Day is 07:00-18:59 capture time, night the rest. The compare stage used this and the cluster
# descriptions 06:00-19:59 until both read this rule; the wider day called 19:xx captures day,
# which is after dark for much of the year (and the demo renders them as night).
DAY_HOURS = range(7, 19)
JOINT_COLUMNS = ("type", "color")
JOINT = "+".join(JOINT_COLUMNS)  # "type+color": the name of the joint label everywhere
JOINT_SEPARATOR = "/"


def day_night(times: pd.Series) -> pd.Series:
    """"day" / "night" per capture time (any format pandas parses); None where it cannot be read."""
    hours = pd.to_datetime(times, errors="coerce").dt.hour
    words = pd.Series(["day" if h in DAY_HOURS else "night" for h in hours.fillna(-1)], index=times.index,
                      dtype=object)
    return words.where(hours.notna(), None)


def joint_label(frame: pd.DataFrame, columns: tuple[str, ...] | list[str] = JOINT_COLUMNS) -> pd.Series:
    """The values of ``columns`` joined by "/" (``suv/white``); a missing part leaves it missing.

    Give string columns (``frame[cols].astype(str)`` where "nan" should count as a value)."""
    return reduce(lambda joined, part: joined + JOINT_SEPARATOR + part, (frame[c] for c in columns))


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, streamed (weights files are hundreds of MB)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
