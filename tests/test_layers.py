"""Lower layers never import upper ones: every ``import recorder.X`` in ``recorder/`` (at the top of a
module or inside a function, ``TYPE_CHECKING`` ones too) goes to the same package or to a lower
layer. The layers, lowest first, as the tree is built:

  0 foundations   model, names, metrics, layout, logs, parent, shard, config_s3
  1 config        the capture's settings (checked with the venue registry's help)
  2 stores        book (the L2 book), ring (shared memory), sinks (where bytes go: files, S3, Redis)
  3 archive       raw frames as received
  4 venues        the feeds (a venue process taps its frames into the archive)
  5 sampler       books on the time grid
  6 compaction    merging stored files
  7 writer        drains the rings into the sinks (and compacts)
  8 dataset, replay   reading what was stored or recorded
  9 export, report, live, sim   users of the data; the simulators beside the pipeline
 10 supervisor    runs the pipeline (and the embedded simulators)
 11 cli_inputs, cli_progress, demo_faults   the command line's parts
 12 api, fleet, cli_capture, cli_simulate, demo   what a user runs

The exceptions are named below, each with its reason (config's are lazy imports inside its checks).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

LAYERS: list[tuple[str, ...]] = [
    ("model", "names", "metrics", "layout", "logs", "parent", "shard", "config_s3"),
    ("config",),
    ("book", "ring", "sinks"),
    ("archive",),
    ("venues",),
    ("sampler",),
    ("compaction",),
    ("writer",),
    ("dataset", "replay"),
    ("export", "report", "live", "sim"),
    ("supervisor",),
    ("cli_inputs", "cli_progress", "demo_faults"),
    ("api", "fleet", "cli_capture", "cli_simulate", "demo"),
]
EXCEPTIONS = {
    ("recorder/config.py", "recorder.venues"): "venue names are checked against the registry (venues/__init__.py)",
    ("recorder/config.py", "recorder.sinks.redis_stream"): "[stream.redis] is checked by the sink that reads it",
    ("recorder/archive/format.py", "recorder.replay.readers"): "archive files are read with the capture readers",
}


def _imports(path: Path) -> list[str]:
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return [m for m in found if m.startswith("recorder.")]


def _unit(root: Path, path: Path) -> str:
    """``recorder/<unit>/...`` or ``recorder/<unit>.py``."""
    parts = path.relative_to(root / "recorder").parts
    return parts[0] if len(parts) > 1 else path.stem


def violations(root: Path) -> list[str]:
    """Every import of an upper (or unranked) layer in ``root/recorder``, as ``file -> module``."""
    rank = {unit: i for i, units in enumerate(LAYERS) for unit in units}
    found = []
    for path in sorted((root / "recorder").rglob("*.py")):
        if path == root / "recorder" / "__init__.py":
            continue
        src = _unit(root, path)
        if src not in rank:
            found.append(f"{path.relative_to(root)}: recorder/{src} has no layer (add it to LAYERS)")
            continue
        for module in _imports(path):
            dst = module.split(".")[1]
            if dst == src or (rank.get(dst, len(LAYERS)) < rank[src]):
                continue
            if (str(path.relative_to(root)), module) in EXCEPTIONS:
                continue
            found.append(f"{path.relative_to(root)} (layer {src}) imports {module}")
    return found


def test_no_module_imports_an_upper_layer() -> None:
    assert violations(ROOT) == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The check can fail: a book module importing the supervisor (in a function), a supervisor
    module importing the command line, a package nobody ranked; a lower layer is fine."""
    for rel, text in {
        "recorder/__init__.py": "",
        "recorder/book/__init__.py": "",
        "recorder/book/l2.py": "import recorder.names\n\ndef f():\n    from recorder.supervisor.run import go\n",
        "recorder/names.py": "import re\n",
        "recorder/supervisor/__init__.py": "",
        "recorder/supervisor/run.py": "from recorder.book.l2 import f\nfrom recorder.cli_inputs import leaf\n",
        "recorder/cli_inputs.py": "LEAF = 1\n",
        "recorder/newpart/x.py": "",
    }.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    assert violations(tmp_path) == [
        "recorder/book/l2.py (layer book) imports recorder.supervisor.run",
        "recorder/newpart/x.py: recorder/newpart has no layer (add it to LAYERS)",
        "recorder/supervisor/run.py (layer supervisor) imports recorder.cli_inputs",
    ]
