"""Stage 2: descriptors. Images -> named N x D matrices in the run folder."""

from vehiclust.describe.registry import (DESCRIPTORS, available, default_descriptors, descriptor_listing, get_spec,
                                         never_clustered, support_descriptors)
from vehiclust.describe.stage import DescribeSettings, DescribeStage, describe, descriptor_key, is_current, rows_key

__all__ = ["DESCRIPTORS", "DescribeSettings", "DescribeStage", "available", "default_descriptors", "describe", "descriptor_key",
           "descriptor_listing", "get_spec", "is_current", "never_clustered", "rows_key", "support_descriptors"]
