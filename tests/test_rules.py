"""The rules several stages share (vehiclust.rules), checked at their edges."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from vehiclust.rules import day_night, joint_label, sha256_file


def test_day_is_seven_to_before_nineteen_and_unreadable_times_are_missing():
    times = pd.Series(["2018-03-01 06:59:59", "2018-03-01 07:00:00", "2018-03-01 18:59:59",
                       "2018-03-01 19:00:00", "2018-03-02 00:30:00", "", "not a time"])
    assert day_night(times).tolist() == ["night", "day", "day", "night", "night", None, None]


def test_compare_attributes_and_report_descriptions_agree_on_day_and_night():
    from vehiclust.compare.attributes import attribute_table
    from vehiclust.report.descriptions import attributes

    class NoDescriptors:
        def descriptor_names(self):
            return []

    table = pd.DataFrame({"time": ["2018-03-01 06:30:00", "2018-03-01 12:00:00", "2018-03-01 19:30:00", ""],
                          "width": [10, 10, 10, 10], "height": [10, 10, 10, 10]})
    compared = attribute_table(NoDescriptors(), table)["day_night"].fillna("").tolist()
    described = attributes(NoDescriptors(), table)["day_night"].tolist()
    assert compared == described == ["night", "day", "night", ""]


def test_joint_label_joins_with_a_slash_and_a_missing_part_stays_missing():
    frame = pd.DataFrame({"type": ["suv", "sedan", None], "color": ["white", None, "red"]})
    joined = joint_label(frame)
    assert joined.iloc[0] == "suv/white" and joined.iloc[1:].isna().all()
    assert joint_label(frame.fillna("?"), ("color", "type")).tolist() == ["white/suv", "?/sedan", "red/?"]


def test_sha256_file_matches_hashlib_on_a_file_larger_than_one_block(tmp_path):
    data = np.random.default_rng(0).bytes(3 * (1 << 20) + 7)
    path = tmp_path / "weights.bin"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
