"""The peak memory of one export, measured in a process of its own (``ru_maxrss``), for the export
memory benchmarks: a long day's peak against a short day's, each from a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

_MEASURE = """
import json, resource, sys, time
from recorder.export import export
t = time.perf_counter()
res = export(sys.argv[1], out=sys.argv[2], **json.loads(sys.argv[3]))
print(json.dumps({"counts": res.counts, "s": time.perf_counter() - t,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def export_peak(data: Path, out: Path, **options: Any) -> dict[str, Any]:
    """``recorder.export.export(data, out=out, **options)`` in a new process: its counts, seconds
    and peak RSS (MB)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(data), str(out), json.dumps(options)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]
