"""Storage sinks: atomic local files (prepare -> journal -> publish)."""

from recorder.sinks.local import (
    PreparedFile,
    SinkError,
    atomic_write_bytes,
    clean_temp_files,
    prepare_jsonl,
    prepare_parquet,
    publish,
    temp_path_for,
)

__all__ = [
    "PreparedFile",
    "SinkError",
    "atomic_write_bytes",
    "clean_temp_files",
    "prepare_jsonl",
    "prepare_parquet",
    "publish",
    "temp_path_for",
]
