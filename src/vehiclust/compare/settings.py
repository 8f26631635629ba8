"""What the compare stage mixes and how it chooses: ``CompareSettings`` and the ``--mix`` grammar.

``--mix`` values, repeatable::

    type+color          two blocks, weights chosen by measurement
    type:2+color:1      two blocks, the user's weights (shares of the fused variance)
    all                 every clustered single descriptor
    auto                the informed pair: for each label column (type, colour), the single
                        descriptor whose clustering captures it best (AMI on the held-out rows)

Block names are descriptor names or short aliases (``type`` -> vehicle_type, ``color`` ->
vehicle_color, ``lite0`` -> efficientnet_lite0, ...); a name that is neither is matched to the
one descriptor that contains it (``type`` finds the case bundle's ``vdc_type``).
"""

from __future__ import annotations

from dataclasses import dataclass

from vehiclust.errors import VehiclustError

ALIASES = {
    "type": "vehicle_type", "color": "vehicle_color", "colour": "vehicle_color",
    "lite0": "efficientnet_lite0", "hist": "color_hist", "histogram": "color_hist",
    "b7": "efficientnet-b7", "reid": "osnet",
}
MIX_PREFIX = "mix_"
CONSENSUS = "consensus"
BLOCK_NORMS = ("variance", "unit")


@dataclass(frozen=True)
class MixSpec:
    """One requested mixture: block names as the user wrote them, weights or None (measure)."""

    blocks: tuple[str, ...]
    weights: tuple[float, ...] | None = None
    is_all: bool = False
    is_auto: bool = False


def parse_mix(text: str) -> MixSpec:
    """``"type+color"``, ``"type:2+color:1"`` or ``"all"`` -> :class:`MixSpec`."""
    text = text.strip()
    if text.lower() == "all":
        return MixSpec((), None, True)
    if text.lower() == "auto":
        return MixSpec((), None, False, True)
    names, weights = [], []
    for part in text.split("+"):
        name, _, weight = part.strip().partition(":")
        if not name:
            raise VehiclustError(f"--mix {text!r}: empty block name; write blocks as a+b or a:2+b:1")
        names.append(name.strip())
        if weight:
            try:
                weights.append(float(weight))
            except ValueError as exc:
                raise VehiclustError(f"--mix {text!r}: weight {weight!r} is not a number") from exc
    if len(names) < 2:
        raise VehiclustError(f"--mix {text!r}: a mixture needs at least two blocks joined by '+'")
    if weights and (len(weights) != len(names) or min(weights) < 0 or sum(weights) <= 0):
        raise VehiclustError(f"--mix {text!r}: give a non-negative weight to every block (a:2+b:1) or to none")
    return MixSpec(tuple(names), tuple(weights) if weights else None)


def resolve_block(name: str, available: list[str]) -> str:
    """A block name as written -> the descriptor it means (exact, alias, then unique substring)."""
    if name in available:
        return name
    alias = ALIASES.get(name.lower())
    if alias in available:
        return alias
    matches = [a for a in available if name.lower() in a.lower()]
    if len(matches) == 1:
        return matches[0]
    why = f"matches {', '.join(matches)}" if matches else "matches no clustered descriptor"
    raise VehiclustError(f"--mix: block {name!r} {why}; clustered descriptors: {', '.join(available)}")


def resolve_mix(spec: MixSpec, available: list[str]) -> tuple[tuple[str, ...], tuple[float, ...] | None]:
    """(descriptor names, weights or None) of a mixture, in a stable order."""
    if spec.is_all:
        if len(available) < 2:
            raise VehiclustError(f"--mix all needs at least two clustered descriptors, got {available}")
        return tuple(sorted(available)), None
    blocks = tuple(resolve_block(b, available) for b in spec.blocks)
    if len(set(blocks)) != len(blocks):
        raise VehiclustError(f"--mix: a block appears twice in {'+'.join(spec.blocks)} ({'+'.join(blocks)})")
    order = sorted(range(len(blocks)), key=lambda i: blocks[i])
    weights = tuple(spec.weights[i] for i in order) if spec.weights else None
    return tuple(blocks[i] for i in order), weights


def mixture_name(blocks: tuple[str, ...], is_all: bool, weights: tuple[float, ...] | None = None) -> str:
    base = MIX_PREFIX + ("all" if is_all else "+".join(blocks))
    if weights:
        base += "@" + "_".join(f"{w:g}" for w in weights)
    return base


def is_derived(name: str) -> bool:
    """A mixture or the consensus: not a descriptor the user brought or extracted."""
    return name.startswith(MIX_PREFIX) or name == CONSENSUS


@dataclass(frozen=True)
class CompareSettings:
    """Settings of the compare stage (every field is part of its fingerprint).

    Mixtures
        ``mixes``: ``--mix`` texts; ``block_norm``: ``variance`` (each block centred and scaled
        to total variance 1) or ``unit`` (each row of each block to length 1, then the block to
        total variance 1); ``block_dims``: blocks wider than this are reduced by PCA before
        concatenation (memory, and a 2560-d block's noise dimensions cannot outvote anything);
        ``mix_dims``: PCA components kept after concatenation; ``tune``: what chooses weights
        when the user gives none: ``auto`` (identity consistency when the collection has vehicle
        ids, else stability), ``identity``, ``stability``, a label column, or columns joined by
        ``+`` (``type+color``: the joint label).
    Held-out rows
        ``tuning_share`` of the rows (whole vehicles when ids exist, at most ``tuning_rows``)
        choose the weights; every number of the comparison is measured on the other rows.
    Comparison
        ``shared_sample`` rows for Davies-Bouldin, silhouette and Calinski-Harabasz in the
        common space; ``agreement_sample`` rows for AMI and the attribute AMIs (O(N) measures
        use every evaluation row); ``consensus_sample`` rows for the co-association matrix.
    Best
        ``best``: a clustering name (or alias) that overrides the rule.
    """

    mixes: tuple[str, ...] = ()
    block_norm: str = "variance"
    block_dims: int = 64
    mix_dims: int = 64
    tune: str = "auto"
    tuning_share: float = 0.2
    tuning_rows: int = 20_000
    shared_sample: int = 3000
    agreement_sample: int = 20_000
    consensus_sample: int = 2000
    consensus: bool = True
    best: str | None = None
    seed: int = 0

    def __post_init__(self):
        value = self.mixes
        if isinstance(value, str):
            value = (value,)
        object.__setattr__(self, "mixes", tuple(value))
        for text in self.mixes:
            parse_mix(text)
        if self.block_norm not in BLOCK_NORMS:
            raise VehiclustError(f"block_norm must be one of {', '.join(BLOCK_NORMS)}, got {self.block_norm!r}")
        if not 0 < self.tuning_share < 0.5:
            raise VehiclustError(f"tuning_share must be between 0 and 0.5, got {self.tuning_share}")

    def specs(self) -> list[MixSpec]:
        return list(dict.fromkeys(parse_mix(t) for t in self.mixes))
