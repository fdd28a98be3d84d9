"""``hydra/sweeper=controlled``: a sampled subset of a design grid that still compares fairly.

GraphGym's controlled random search (You, Ying & Leskovec 2020): for each studied factor,
draw ``num_base`` random configurations of the other factors and, for each, enumerate every
level of the studied factor with everything else held fixed. Each level is thereby compared
against otherwise-equal configurations (what the report's rank view needs), at a fraction of
the full grid's cost. Parameters that are not studied factors (e.g. ``seed``) are crossed
with every sampled configuration.
"""

import itertools
import random
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper


@dataclass
class ControlledSweeperConf:
    _target_: str = (
        "hydra_plugins.mmgnn_controlled_sweeper.controlled_sweeper.ControlledRandomSweeper"
    )
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None
    controlled: List[str] = field(default_factory=list)  # the studied factors
    num_base: int = 2  # random base configurations per studied factor
    seed: int = 0  # the sampling seed (not the training seed)


ConfigStore.instance().store(
    group="hydra/sweeper", name="controlled", node=ControlledSweeperConf, provider="mmgnn"
)


def controlled_design(
    levels: Dict[str, List[str]], controlled: List[str], num_base: int, seed: int
) -> List[Dict[str, str]]:
    """The sampled configurations: for each factor, ``num_base`` bases x all its levels.

    ``levels`` maps each studied factor to its levels; duplicates are dropped, order kept.
    """
    rng = random.Random(seed)
    seen, design = set(), []
    for factor in controlled:
        for _ in range(num_base):
            base = {f: rng.choice(levels[f]) for f in controlled}
            for level in levels[factor]:
                config = {**base, factor: level}
                key = tuple(config[f] for f in controlled)
                if key not in seen:
                    seen.add(key)
                    design.append(config)
    return design


class ControlledRandomSweeper(BasicSweeper):
    """A ``BasicSweeper`` whose job list is a controlled random sample of the grid."""

    def __init__(
        self,
        max_batch_size: Optional[int],
        params: Optional[Dict[str, str]] = None,
        controlled: Optional[List[str]] = None,
        num_base: int = 2,
        seed: int = 0,
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.controlled = list(controlled or [])
        self.num_base = num_base
        self.sample_seed = seed

    def split_arguments(  # type: ignore[override]
        self, overrides: List[Override], max_batch_size: Optional[int]
    ) -> List[List[List[str]]]:
        values: Dict[str, List[str]] = {}
        for override in overrides:
            key = override.get_key_element()
            if override.is_sweep_override():
                if not override.is_discrete_sweep():
                    raise HydraException(f"controlled sweeper: {key} must be a list of values")
                values[key] = [str(v) for v in override.sweep_string_iterator()]
            else:
                values[key] = [override.get_value_element_as_str()]
        missing = [f for f in self.controlled if f not in values]
        if missing:
            raise HydraException(
                f"controlled sweeper: studied factors {missing} have no values in "
                "hydra.sweeper.params"
            )
        design = controlled_design(
            {f: values[f] for f in self.controlled}, self.controlled, self.num_base,
            self.sample_seed,
        )
        crossed = [[f"{k}={v}" for v in vs] for k, vs in values.items() if k not in self.controlled]
        jobs = [
            [f"{f}={config[f]}" for f in self.controlled] + list(rest)
            for config in design
            for rest in itertools.product(*crossed)
        ]
        if max_batch_size is None:
            return [jobs]
        return [jobs[i : i + max_batch_size] for i in range(0, len(jobs), max_batch_size)]
