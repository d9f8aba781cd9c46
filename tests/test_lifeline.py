"""Nothing outlives a capture: kill -9 of the supervisor takes every child with it (venue,
writer, embedded simulator, resource tracker), leaves no shared memory, and the next start of the
session works on intact data; a failed start leaves no half-made session behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from recorder.supervisor.lifeline import session_segments, session_shm_key
from tests.conftest import (
    CLI,
    ROOT,
    assert_no_torn_files,
    every_pair_sampled,
    read_jsonl,
    read_parquet_rows,
    run_cli,
    status,
    wait_for,
)

pytestmark = pytest.mark.timeout(180)

PAIRS = "BTC-USDT,ETH-USDT"


def _marked(mark: str) -> list[psutil.Process]:
    """Every live process started with our marker in its environment: the CLI's whole tree,
    found even after its members were re-parented to init (an orphan's ppid says nothing)."""
    found = []
    for proc in psutil.process_iter(["status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and proc.environ().get("RECORDER_TEST_MARK") == mark:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


@pytest.fixture
def mark() -> Iterator[str]:
    """A marker for the test's processes; whatever of them a failed test left is killed."""
    value = uuid.uuid4().hex
    yield value
    for proc in _marked(value):
        proc.kill()


def _listening_ports(procs: list[psutil.Process]) -> set[int]:
    ports = set()
    for proc in procs:
        try:
            conns = proc.net_connections(kind="tcp")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        ports |= {c.laddr.port for c in conns if c.status == psutil.CONN_LISTEN}
    return ports


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return True
    return False


def _start(data: Path, session: str, mark: str, *extra: str) -> subprocess.Popen[bytes]:
    args = ["start-capture", "--venue", "binance", "--pairs", PAIRS, "--simulate", "--interval", "0.5"]
    args += ["--data-dir", str(data), "--session-id", session, *extra]
    env = {**os.environ, "RECORDER_TEST_MARK": mark}
    # Its log to a file: a pipe nobody reads could fill up and stall the capture.
    with open(data.parent / f"{session}.stderr", "a") as err:
        return subprocess.Popen([*CLI, *args], stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT, env=env)


def _capture_then_kill_9(data: Path, session: str, mark: str, also_tracker: bool) -> set[int]:
    """Capture until every pair has samples, then SIGKILL the supervisor (and with
    ``also_tracker`` its resource tracker too); the ports its children listened on."""
    proc = _start(data, session, mark)
    try:
        wait_for(lambda: every_pair_sampled(data, session, 4), 90, "samples of every pair")
        children = psutil.Process(proc.pid).children(recursive=True)
        kinds = {" ".join(c.cmdline()) for c in children}
        assert len(children) >= 4 and any("resource_tracker" in k for k in kinds), kinds  # sim, venue, writer
        ports = _listening_ports(children)
        assert ports, "the embedded simulator listens"
        assert session_segments(session_shm_key(data, session)), "the rings are named per session"
        if also_tracker:
            for child in children:
                if "resource_tracker" in " ".join(child.cmdline()):
                    child.kill()
        _kill_9_and_wait_for_all_gone(proc, mark)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return ports


def _kill_9_and_wait_for_all_gone(proc: subprocess.Popen[bytes], mark: str) -> None:
    """SIGKILL the supervisor; every process of the capture (found by ``mark``) must follow it."""
    proc.kill()
    proc.wait(10)
    wait_for(lambda: not _marked(mark), 30, "every process of the capture gone")


def _restart_and_check(data: Path, session: str) -> None:
    """The next start of the session works, and what was stored before the kill still reads."""
    assert_no_torn_files(data)
    before_jsonl = {(r["pair"], r["sequence_number"]) for r in read_jsonl(data)}
    before_parquet = {(r["pair"], r["sequence_number"]) for r in read_parquet_rows(data)}
    assert before_jsonl and before_jsonl == before_parquet
    res = run_cli(
        "start-capture", "--venue", "binance", "--pairs", PAIRS, "--simulate", "--interval", "0.5",
        "--data-dir", str(data), "--session-id", session, "--duration", "3s",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    final = status(data, session)
    assert final is not None and final["state"] == "stopped" and final["flushed"]
    assert_no_torn_files(data)
    after = [(r["pair"], r["sequence_number"]) for r in read_jsonl(data)]
    assert len(after) == len(set(after)), "no snapshot stored twice"
    assert before_jsonl < set(after), "everything from before the kill is still there, and more"
    assert {(r["pair"], r["sequence_number"]) for r in read_parquet_rows(data)} == set(after)
    assert not session_segments(session_shm_key(data, session)), "a clean stop unlinks its segments"


def test_kill_9_of_the_supervisor_leaves_no_process_and_no_shared_memory(tmp_path: Path, mark: str) -> None:
    data = tmp_path / "data"
    ports = _capture_then_kill_9(data, "k9", mark, also_tracker=False)
    assert all(_refused(p) for p in ports), "nothing listens on the simulator's port any more"
    wait_for(lambda: not session_segments(session_shm_key(data, "k9")), 10, "no segment of the session left")
    _restart_and_check(data, "k9")


def test_shared_memory_a_dead_run_left_is_reclaimed_by_the_next_start(tmp_path: Path, mark: str) -> None:
    """Supervisor and resource tracker both killed: nobody unlinks the segments; the next start does."""
    data = tmp_path / "data"
    _capture_then_kill_9(data, "leak", mark, also_tracker=True)
    left = session_segments(session_shm_key(data, "leak"))
    assert any(name.endswith("-r0") for name in left), left  # the ring, 64 MiB
    _restart_and_check(data, "leak")
    assert not any((Path("/dev/shm") / name).exists() for name in left)


def test_a_failed_start_leaves_no_session_no_process_and_no_shared_memory(tmp_path: Path, mark: str) -> None:
    """The simulator is up, the session dir made, then the pair check fails."""
    data = tmp_path / "data"
    env = {**os.environ, "RECORDER_TEST_MARK": mark}
    args = ["start-capture", "--venue", "binance", "--pairs", "NOPE-USDT", "--simulate"]
    res = subprocess.run(
        [*CLI, *args, "--data-dir", str(data), "--session-id", "bad"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120,
    )  # fmt: skip
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1] == "Error: unknown pair(s) on binance: NOPE-USDT"
    assert "Traceback" not in res.stderr
    assert not (data / ".sessions" / "bad").exists()
    assert not session_segments(session_shm_key(data, "bad"))
    wait_for(lambda: not _marked(mark), 30, "the embedded simulator gone")
    status_res = run_cli("capture-status", "--data-dir", str(data), "--session-id", "bad")
    assert status_res.returncode == 2 and status_res.stderr.strip() == f"Error: no session 'bad' under {data}"


def test_a_failed_restart_keeps_the_last_runs_status(tmp_path: Path) -> None:
    data = tmp_path / "data"
    args = ["start-capture", "--venue", "binance", "--simulate", "--data-dir", str(data), "--session-id", "s"]
    assert run_cli(*args, "--pairs", "BTC-USDT", "--duration", "2s").returncode == 0
    before = (data / ".sessions" / "s" / "status.json").read_text()
    res = run_cli(*args, "--pairs", "NOPE-USDT")
    assert res.returncode == 2 and "Error: unknown pair(s) on binance: NOPE-USDT" in res.stderr
    assert (data / ".sessions" / "s" / "status.json").read_text() == before
    shown = run_cli("capture-status", "--data-dir", str(data), "--session-id", "s")
    assert shown.returncode == 0 and shown.stdout.startswith("session s: stopped")


def test_capture_status_of_a_start_killed_before_its_first_status(tmp_path: Path) -> None:
    """What a supervisor killed during its checks leaves (a lock and a pid file): one clear line."""
    session_dir = tmp_path / ".sessions" / "early"
    session_dir.mkdir(parents=True)
    (session_dir / "lock").touch()
    (session_dir / "supervisor.pid").write_text("999999")
    res = run_cli("capture-status", "--data-dir", str(tmp_path), "--session-id", "early")
    assert res.returncode == 2
    assert res.stderr.strip() == "Error: session 'early' never started capturing: its start failed or was killed"


def test_children_stop_when_the_supervisor_is_killed_during_its_checks(tmp_path: Path, mark: str) -> None:
    """SIGKILL while the start is still in its checks: kill as soon as the embedded simulator
    listens (the supervisor has spawned nothing else yet, or only just)."""
    data = tmp_path / "data"
    proc = _start(data, "early", mark)
    try:
        wait_for(lambda: _listening_ports(psutil.Process(proc.pid).children(recursive=True)), 60, "simulator up")
        _kill_9_and_wait_for_all_gone(proc, mark)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP], ids=["SIGINT", "SIGHUP"])
def test_ctrl_c_or_a_hangup_stops_a_simulated_capture_cleanly(tmp_path: Path, mark: str, signum: int) -> None:
    """Ctrl-C (and a closed terminal's SIGHUP) reach the terminal's whole process group: the
    embedded simulators must not go before the venues have stopped (they did, and the stop was
    counted as reconnects and misses), and a hangup is a clean stop, not a death."""
    data = tmp_path / "data"
    cfg = tmp_path / "two.toml"
    lines = [f'data_dir = "{data}"', 'session_id = "ctrlc"', "simulate = true", 'interval = "200ms"']
    for venue in ("binance", "okx"):
        lines += ["", f"[venues.{venue}]", 'pairs = ["BTC-USDT", "ETH-USDT"]']
    cfg.write_text("\n".join(lines) + "\n")
    env = {**os.environ, "RECORDER_TEST_MARK": mark}
    with open(tmp_path / "stderr", "w") as err:
        proc = subprocess.Popen(
            [*CLI, "start-capture", "--config", str(cfg)], stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT, env=env,
            start_new_session=True,  # its own process group, as a shell gives a foreground job
        )  # fmt: skip
    try:
        wait_for(lambda: every_pair_sampled(data, "ctrlc", 5), 90, "samples of every pair")
        os.killpg(proc.pid, signum)
        assert proc.wait(90) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    final = status(data, "ctrlc")
    assert final is not None and final["state"] == "stopped" and final["flushed"]
    for venue, v in final["venues"].items():
        assert v["reconnects"] == 0 and v["missed_ticks"] == 0, (venue, v["reconnects"], v["missed_ticks"])


def test_a_start_waits_for_a_dead_runs_children_and_says_so_when_they_stay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child of a dead run (here: this test, holding children.lock as child_main does) still
    draining into the session: the next start must not write beside it, and must say why."""
    import fcntl

    from recorder.config import build_config
    from recorder.supervisor import supervisor as sup
    from recorder.supervisor.session import SessionDir

    monkeypatch.setattr(sup, "PREVIOUS_RUN_WAIT_S", 0.5)
    session = SessionDir(tmp_path, "busy")
    session.path.mkdir(parents=True)
    fd = os.open(session.children_lock, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_SH)
    cfg = build_config(
        None, {"venue": "binance", "pairs": ["BTC-USDT"], "data_dir": str(tmp_path), "session_id": "busy"}
    )
    try:
        with pytest.raises(sup.CaptureError, match="processes of a previous run of session 'busy' are still running"):
            sup.Supervisor(cfg).prepare()
        assert session.children_lock.exists(), "the lock that shows the dead run's children stays"
        assert not session.is_running()
    finally:
        os.close(fd)
    # Once they are gone the start goes on (its pair check skipped: no venue runs here).
    monkeypatch.setattr(sup.Supervisor, "_check_pairs", lambda self: None)
    supervisor = sup.Supervisor(cfg)
    supervisor.prepare()
    try:
        assert session.is_running() and session_segments(session_shm_key(tmp_path, "busy"))
    finally:
        supervisor._release_shared_memory()
        supervisor.session.release()
