# SPDX-License-Identifier: Apache-2.0
"""Input and target samples matched by valid time, under a stated calendar rule.

The input store (a climate model on a coarse grid) and the target store
(a reanalysis on a fine grid) are prepared separately; a sample is a valid
time both hold. Their calendars (``store.json``'s ``calendar``, a cftime
name; a store without it is ``standard``) must agree under this rule:

* ``standard``, ``gregorian`` and ``proleptic_gregorian`` are one calendar
  for dates from 15 October 1582 on (they differ only before it);
* a ``noleap`` (``365_day``) input with a standard target pairs by calendar
  date (the stamps already are calendar dates): targets on 29 February have
  no input; they are dropped, counted and reported;
* every other mismatch is refused, naming both calendars.

Nothing is ever shifted: a target without an input at its exact valid time
is left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.store import ShardStore
from ..errors import DataError

#: cftime names of one calendar, mapped to one spelling.
ALIASES = {"gregorian": "standard", "proleptic_gregorian": "standard", "365_day": "noleap", "366_day": "all_leap"}
#: Where the Gregorian, standard and proleptic Gregorian calendars start to agree.
GREGORIAN_START = np.datetime64("1582-10-15T00", "h")


def store_calendar(store: ShardStore) -> str:
    """The store's calendar as its manifest names it (``standard`` when it names none)."""
    return str((store.manifest or {}).get("calendar", "standard"))


def calendar_rule(input_store: ShardStore, target_store: ShardStore) -> str:
    """How the two stores' valid times pair: ``"same"`` or ``"noleap_to_standard"``.

    Raises
    ------
    DataError
        Naming both stores and both calendars when the rule refuses the pair.
    """
    names = store_calendar(input_store), store_calendar(target_store)
    given, wanted = (ALIASES.get(n, n) for n in names)
    if given == wanted:
        return "same"
    if (given, wanted) == ("noleap", "standard"):
        return "noleap_to_standard"
    raise DataError(
        f"calendars differ: input store {input_store.root} is {names[0]!r}, target store "
        f"{target_store.root} is {names[1]!r}; only a noleap input with a standard target is paired "
        "(by calendar date, 29 February targets dropped). Prepare both on one calendar"
    )


def store_splits(store: ShardStore) -> list[str]:
    """The splits whose periods the store's manifest records (none without a manifest)."""
    manifest = store.manifest or {}
    return list(manifest.get("coverage", manifest.get("splits", {})))


def store_times(store: ShardStore, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Valid times ``[N]`` (datetime64, hours) of a split and where each is: ``[N, 2]`` (shard, step).

    Raises
    ------
    DataError
        A store without time stamps (no ``store.json``), or without the split, naming both.
    """
    if store.manifest is not None and split not in store_splits(store):
        raise DataError(f"{store.root} has no {split!r} split; it has {store_splits(store)}")
    per_shard = store.shard_times(split)
    times = np.concatenate(per_shard).astype("datetime64[h]")
    where = np.concatenate([np.stack([np.full(len(t), i), np.arange(len(t))], 1) for i, t in enumerate(per_shard)])
    return times, where


@dataclass(frozen=True)
class Pairs:
    """The samples of one split: valid times both stores hold.

    Attributes
    ----------
    split : str
    times : np.ndarray
        ``[N]`` datetime64 (hours), ascending.
    input_at, target_at : np.ndarray
        ``[N, 2]``: (shard, step) of each sample in the input and target store.
    rule : str
        ``"same"`` or ``"noleap_to_standard"`` (:func:`calendar_rule`).
    dropped_leap_days : int
        Target times on 29 February within the input's period, dropped (``noleap_to_standard``).
    unmatched_targets : int
        Target times with no input at all (the dropped leap days included).
    """

    split: str
    times: np.ndarray
    input_at: np.ndarray
    target_at: np.ndarray
    rule: str
    dropped_leap_days: int
    unmatched_targets: int

    def summary(self) -> dict:
        """The facts ``run.json`` and the scorecard record."""
        first, last = (str(self.times[i]) for i in (0, -1))
        return {
            "samples": int(len(self.times)),
            "first": first,
            "last": last,
            "calendar_rule": self.rule,
            "dropped_leap_days": self.dropped_leap_days,
            "unmatched_targets": self.unmatched_targets,
        }


def pair_times(input_store: ShardStore, target_store: ShardStore, split: str) -> Pairs:
    """The samples of ``split``: target valid times the input store holds too.

    Raises
    ------
    DataError
        Calendars the rule refuses (:func:`calendar_rule`); standard-family calendars that differ
        in name with dates before 15 October 1582; no valid time in common (naming both stores,
        the split and both periods).
    """
    rule = calendar_rule(input_store, target_store)
    (t_in, at_in), (t_out, at_out) = store_times(input_store, split), store_times(target_store, split)
    names = store_calendar(input_store), store_calendar(target_store)
    if names[0] != names[1] and rule == "same" and min(t_in.min(), t_out.min()) < GREGORIAN_START:
        raise DataError(
            f"split {split!r}: input store {input_store.root} ({names[0]}) and target store "
            f"{target_store.root} ({names[1]}) differ before 15 October 1582, and their dates reach back "
            f"to {min(t_in.min(), t_out.min())}; prepare both on one calendar"
        )
    # exact stamps only: a time one store lacks is never matched to a neighbour
    common, i_in, i_out = np.intersect1d(t_in, t_out, assume_unique=True, return_indices=True)
    if common.size == 0:
        raise DataError(
            f"split {split!r}: no valid time is in both stores: input store {input_store.root} holds "
            f"{t_in.min()} .. {t_in.max()} ({t_in.size} steps), target store {target_store.root} holds "
            f"{t_out.min()} .. {t_out.max()} ({t_out.size} steps)"
        )
    unmatched = np.setdiff1d(t_out, common)
    leap_days = 0
    if rule == "noleap_to_standard":  # the input's calendar has no 29 February: count what it cannot pair
        within = unmatched[(unmatched >= t_in.min()) & (unmatched <= t_in.max())]
        leap_days = int(sum(str(t)[5:10] == "02-29" for t in within))
    return Pairs(split, common, at_in[i_in], at_out[i_out], rule, leap_days, int(unmatched.size))
