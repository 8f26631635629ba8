"""Stage 2: descriptors. Images -> named N x D matrices in the run folder."""

from vehiclust.describe.extract import DescribeSettings, describe
from vehiclust.describe.registry import DEFAULT_IMAGE_DESCRIPTORS, available, get_spec

__all__ = ["DEFAULT_IMAGE_DESCRIPTORS", "DescribeSettings", "available", "describe", "get_spec"]
