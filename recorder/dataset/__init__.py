"""Read what the recorder stored, for backtests: ``open_dataset(path_or_s3_url)``.

See the README section "Reading the data" for the API.
"""

from recorder.dataset.frames import BookSnapshot, book_metrics
from recorder.dataset.reader import Dataset, Selection, open_dataset
from recorder.dataset.source import DataFile, DatasetError
from recorder.dataset.timeutil import iso, to_ms

__all__ = [
    "BookSnapshot",
    "DataFile",
    "Dataset",
    "DatasetError",
    "Selection",
    "book_metrics",
    "iso",
    "open_dataset",
    "to_ms",
]
