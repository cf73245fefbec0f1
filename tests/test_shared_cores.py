"""A model's instances share the cores: a run alone takes the wide session, a run beside another instance
the narrow one, and "beside" is read across processes from flocks that die with their holder.

The other instance is a real second process holding its flag; the sessions are small recorders, since
what is under test is the choice, not ONNX Runtime (tests/test_instances.py serves the real thing).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from ganexport.serving.shared_cores import BusyFlags, CoreSharingSession, narrow_threads

HOLD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from ganexport.serving.shared_cores import BusyFlags
    flags = BusyFlags(Path(sys.argv[1]), "other")
    with flags.running():
        print("holding", flush=True)
        time.sleep(float(sys.argv[2]))
    print("released", flush=True)
    time.sleep(60)
""")


def _other_instance(directory, hold_s: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(directory), str(hold_s)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "holding"
    return proc


class _Recorder:
    def __init__(self, name: str, log: list):
        self.name, self.log, self.closed = name, log, False

    def run(self, output_names, feeds):
        self.log.append(self.name)
        return [feeds["x"]]

    def get_providers(self):
        return ["CPUExecutionProvider"]

    def close(self):
        self.closed = True


def test_another_instance_running_is_seen_from_here_until_it_stops(tmp_path):
    mine = BusyFlags(tmp_path, "mine")
    assert not mine.others_running()
    other = _other_instance(tmp_path, hold_s=2.0)
    try:
        assert mine.others_running()
        with mine.running():  # holding our own flag never counts as another instance
            assert mine.others_running()
        assert other.stdout.readline().strip() == "released"
        assert not mine.others_running()
    finally:
        other.kill()
        other.wait()
    mine.close()
    assert not list(tmp_path.glob("mine*"))


def test_a_killed_instance_never_leaves_its_model_marked_running(tmp_path):
    mine = BusyFlags(tmp_path, "mine")
    other = _other_instance(tmp_path, hold_s=600)
    assert mine.others_running()
    os.kill(other.pid, signal.SIGKILL)
    other.wait()
    deadline = time.monotonic() + 10
    while mine.others_running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not mine.others_running()
    mine.close()


def test_an_instance_started_again_is_seen_and_one_that_went_is_not_brought_back(tmp_path):
    """A stub that exits takes its flag file along; its successor (a restart, a reload) makes a new file under
    the same name, which the instances already running must see, however soon after they last looked."""
    mine, first = BusyFlags(tmp_path, "mine"), BusyFlags(tmp_path, "other")
    with first.running():
        assert mine.others_running()
    first.close()
    assert not mine.others_running() and not list(tmp_path.glob("other*"))
    again = _other_instance(tmp_path, hold_s=600)
    try:
        assert mine.others_running()
        time.sleep(1.2)  # the folder's listing has settled since: still seen, from the cached flags
        assert mine.others_running()
    finally:
        again.kill()
        again.wait()
    assert not mine.others_running()
    mine.close()


def test_a_reloaded_instance_is_seen_while_and_after_its_predecessor_goes(tmp_path):
    """A reload starts the new stub of an instance while the old one, of the same instance name, still runs."""
    mine, old = BusyFlags(tmp_path, "mine"), BusyFlags(tmp_path, "other")
    new = _other_instance(tmp_path, hold_s=600)
    try:
        old.close()
        assert mine.others_running()
    finally:
        new.kill()
        new.wait()
    mine.close()


def test_runs_go_wide_alone_and_narrow_beside_another_instance(tmp_path):
    log, built = [], []
    wide = _Recorder("wide", log)

    def narrow():
        built.append(_Recorder("narrow", log))
        return built[-1]

    session = CoreSharingSession(wide, narrow, BusyFlags(tmp_path, "mine"))
    assert session.run(None, {"x": 1}) == [1] and not built  # the narrow session is built only when needed
    other = _other_instance(tmp_path, hold_s=600)
    try:
        session.run(None, {"x": 2})
        session.run(None, {"x": 3})
    finally:
        other.kill()
        other.wait()
    session.run(None, {"x": 4})
    assert log == ["wide", "narrow", "narrow", "wide"] and len(built) == 1 and session.narrow_runs == 2
    session.close()
    assert wide.closed and built[0].closed


@pytest.mark.parametrize("model,instance", [("cyclegan_a2b", "cyclegan_a2b_0_1"), ("we/ird name", "../x")])
def test_flags_live_in_a_folder_of_their_own_per_server_and_model(model, instance):
    flags = BusyFlags.for_instance(model, instance)
    try:
        assert flags.directory.name.endswith(f"{os.getppid()}-" + model.replace("/", "_").replace(" ", "_"))
        assert flags.path.parent == flags.directory and "/" not in flags.path.name.removesuffix(".running")
    finally:
        flags.close()
    assert not flags.directory.exists()


def test_a_run_beside_others_gets_its_share_of_the_threads():
    assert narrow_threads("2", 2) == 1 and narrow_threads(16, 2) == 8 and narrow_threads("2", 3) == 1
    assert narrow_threads(None, 2) == max(1, len(os.sched_getaffinity(0)) // 2)  # unset: one per usable core
