"""Compare the descriptors' clusterings and mix descriptors (issue 7).

Where things are: :mod:`.settings` (``CompareSettings``, the ``--mix`` grammar and the short
names), :mod:`.fusion` (block normalisation, the fused matrix stored as a derived descriptor),
:mod:`.weights` (block weights chosen by measurement on held-out vehicles), :mod:`.consensus`
(evidence accumulation over the selected clusterings), :mod:`.agreement` (ARI / AMI / NMI
between clusterings, contingency tables), :mod:`.attributes` (what each clustering groups:
type, colour, camera, day/night, viewpoint proxy, image quality), :mod:`.table` (the common
space, comparison.csv and the rule that picks the best clustering), :mod:`.stage` (the stage).
"""

from vehiclust.compare.settings import CompareSettings, MixSpec, parse_mix
from vehiclust.compare.stage import compare

__all__ = ["CompareSettings", "MixSpec", "compare", "parse_mix"]
