"""Ids of the groups (dataset, exchange, pair) the open segment met: what numbers its records.

Sequence numbers run per group, and a group's records go to the partition of its dataset and
exchange (and date). At 1000 pairs a 20 ms ring read holds about one record per group, so any
Python step per group of a read costs as much as one per record: instead each group keeps one
id for the segment's life (given when it is first met), and a read's records carry their
group's id, so numbering and partitioning them is numpy over ids.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recorder.writer.datasets import DatasetSpec

# (dataset, exchange, pair): what numbers a record (sequence numbers run per group).
Group = tuple[DatasetSpec, str, str]


class GroupIds:
    """An id (0, 1, ...) per group met, kept for this object's life (``Segment.group_ids``: as
    many as the groups of the segment's records, whatever names producers send)."""

    def __init__(self) -> None:
        self.groups: list[Group] = []  # by id
        # (dataset name, exchange) -> pair -> id (a DatasetSpec's own hash is slow, its name's not).
        self._ids: dict[tuple[str, str], dict[str, int]] = {}
        # (dataset name, exchange) -> its code (0, 1, ...), and each id's: its partition but the date.
        self._stem_of: dict[tuple[str, str], int] = {}
        self._stems: list[int] = []  # by id
        self._stem_array = np.zeros(0, np.int64)

    def code(self, group: Group) -> int:
        """The group's id."""
        spec, exchange, pair = group
        return self.ids(spec, [exchange], [pair])[0]

    def ids(self, spec: DatasetSpec, exchanges: list[str], pairs: list[str]) -> list[int]:
        """The id of each group (``spec``, ``exchanges[k]``, ``pairs[k]``): a dict lookup each,
        all in C when they are of one exchange (a venue's ring); a new group's id given here."""
        if exchanges.count(exchanges[0]) == len(exchanges):
            ids: list[Any] = list(map(self._of_pair(spec, exchanges[0]).get, pairs))
        else:
            ids = [self._of_pair(spec, exchange).get(pair) for exchange, pair in zip(exchanges, pairs, strict=True)]
        if None in ids:
            for k, known in enumerate(ids):
                if known is None:
                    of_pair = self._of_pair(spec, exchanges[k])
                    ids[k] = of_pair.get(pairs[k])  # met earlier in ``pairs``
                    if ids[k] is None:
                        ids[k] = of_pair[pairs[k]] = len(self.groups)
                        self.groups.append((spec, exchanges[k], pairs[k]))
                        self._stems.append(self._stem_of[(spec.name, exchanges[k])])
        return ids

    def _of_pair(self, spec: DatasetSpec, exchange: str) -> dict[str, int]:
        of_pair = self._ids.get((spec.name, exchange))
        if of_pair is None:
            of_pair = self._ids[(spec.name, exchange)] = {}
            self._stem_of[(spec.name, exchange)] = len(self._stem_of)
        return of_pair

    def stems(self) -> np.ndarray:
        """Each id's (dataset, exchange) code (int64, by id)."""
        if len(self._stem_array) != len(self._stems):
            self._stem_array = np.array(self._stems, np.int64)
        return self._stem_array
