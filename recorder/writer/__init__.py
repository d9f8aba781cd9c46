"""The writer process: rings -> Arrow/JSONL segments -> atomic files, journaled commits."""

from recorder.writer.process import WRITER_COUNTER_FIELDS, Writer, WriterSpec, run_writer, spec_from_config

__all__ = ["WRITER_COUNTER_FIELDS", "Writer", "WriterSpec", "run_writer", "spec_from_config"]
