"""One searched key of a sweep: exactly one of four distributions (torch-free).

Apart from the sweep schema (genflow/sweep/space.py) so that each model spec can declare its own
search-space presets (genflow/models/specs.py) without the spec and the sweep importing each other.
"""
from __future__ import annotations

import math
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

Int = int  # the field named ``int`` below shadows the builtin inside the class body
Number = int | float
Scalar = int | float | str | bool
Pair = Annotated[list[Number], Field(min_length=2, max_length=2)]
IntPair = Annotated[list[Int], Field(min_length=2, max_length=2)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Dimension(_Strict):
    """One searched key: exactly one of the four distributions."""

    loguniform: Pair | None = None
    uniform: Pair | None = None
    int: IntPair | None = Field(None, description="integers low..high inclusive")
    choice: list[Scalar] | None = Field(None, min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _exactly_one(self):
        given = [k for k in ("loguniform", "uniform", "int", "choice") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of loguniform, uniform, int, choice; got {given or 'none'}")
        low_high = self.loguniform or self.uniform or self.int
        if low_high is not None and not low_high[0] < low_high[1]:
            raise ValueError(f"{given[0]}: low must be below high; got {list(low_high)}")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError(f"loguniform: bounds must be positive; got {list(self.loguniform)}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("loguniform", "uniform", "int", "choice") if getattr(self, k) is not None)

    def proposals(self) -> list[Scalar]:
        """Values standing for every value this dimension can propose, for checking a space
        before Ray: each choice; a range's ends, and also what lies between them. Ray Tune
        proposes floats for uniform and loguniform, so their ends and midpoint are floats (an
        integer key refuses them); an int range adds each end's neighbour, so that an odd and
        an even value are both tried (a rule like 'a multiple of pac' tells them apart)."""
        if self.choice is not None:
            return list(self.choice)
        if self.int is not None:
            low, high = self.int
            return sorted({low, min(low + 1, high), max(high - 1, low), high})
        low, high = self.loguniform or self.uniform
        try:
            low, high = float(low), float(high)
        except OverflowError:  # an int past any float: no key accepts it, which the ends alone show
            return [low, high]
        middle = math.sqrt(low) * math.sqrt(high) if self.loguniform else low / 2 + high / 2
        return [low, middle, high]


def dim(**kwargs) -> Dimension:
    """``dim(loguniform=[1e-4, 1e-3])``: the short form the presets are written in."""
    return Dimension(**kwargs)
