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
    """An id (0, 1, ...) per group met, kept for this object's life (``Segment.group_ids``)."""

    def __init__(self) -> None:
        self.groups: list[Group] = []  # by id
        # Dataset name -> (exchange, pair) -> id: a DatasetSpec's own hash is slow, its name's not.
        self._ids: dict[str, dict[tuple[str, str], int]] = {}
        # Each id's (dataset, exchange) code: its partition but for the date.
        self._stem_of: dict[tuple[str, str], int] = {}
        self._stems: list[int] = []
        self._stem_array = np.zeros(0, np.int64)

    def code(self, group: Group) -> int:
        """The group's id."""
        spec, exchange, pair = group
        return self.ids(spec, [(exchange, pair)])[0]

    def ids(self, spec: DatasetSpec, keys: list[tuple[str, str]]) -> list[int]:
        """The id of each (exchange, pair) of ``keys`` of dataset ``spec``: a dict lookup each,
        in C; a new group's id given here."""
        of_spec = self._ids.get(spec.name)
        if of_spec is None:
            of_spec = self._ids[spec.name] = {}
        ids: list[Any] = list(map(of_spec.get, keys))
        if None in ids:
            for k, key in enumerate(keys):
                if ids[k] is None:
                    ids[k] = of_spec.get(key)  # met earlier in ``keys``
                    if ids[k] is None:
                        ids[k] = of_spec[key] = self._new(spec, key[0], key[1])
        return ids

    def _new(self, spec: DatasetSpec, exchange: str, pair: str) -> int:
        self.groups.append((spec, exchange, pair))
        stem = (spec.name, exchange)
        code = self._stem_of.get(stem)
        if code is None:
            code = self._stem_of[stem] = len(self._stem_of)
        self._stems.append(code)
        return len(self.groups) - 1

    def stems(self) -> np.ndarray:
        """Each id's (dataset, exchange) code (int64, by id)."""
        if len(self._stem_array) != len(self._stems):
            self._stem_array = np.array(self._stems, np.int64)
        return self._stem_array
