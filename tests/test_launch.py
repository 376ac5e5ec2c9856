"""qosbatch.launch: a started command is awaited, and stopped with all it started.

The commands are small Python scripts (no server, no port), so these run in a
second or two: what is checked is the process handling every benchmark relies on.
"""

import os
import signal
import sys
import time

import pytest

from qosbatch.launch import LaunchError, cpu_list, leftovers, running
from qosbatch.testing import banner_url

# Prints a banner like the server's, then starts a grandchild in a session of its own
# (as BentoML's workers are) and waits; SIGTERM to it is ignored when asked to.
SCRIPT = """
import os, signal, subprocess, sys, time
if sys.argv[1] == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
print("qosbatch: serving on http://127.0.0.1:4321 (Ctrl-C or SIGTERM drains)", flush=True)
time.sleep(60)
"""


def _gone(pids, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(os.path.exists(f"/proc/{p}") and _live(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def _live(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("mode", ["polite", "stubborn"])
def test_ready_from_the_banner_and_everything_it_started_is_stopped(tmp_path, mode):
    argv = [sys.executable, "-c", SCRIPT, mode]
    log = tmp_path / "server.log"
    with running("fake", argv, banner_url, 20, log_path=log, grace_s=0.5) as server:
        assert server.url == "http://127.0.0.1:4321"
        assert server.ready_s >= 0 and server.alive()
        started = []
        deadline = time.monotonic() + 5
        while len(started) < 2 and time.monotonic() < deadline:  # the leader and its child
            started = leftovers(server.pgid, server.tag)
            time.sleep(0.05)
        assert len(started) == 2
    assert not server.alive()
    assert _gone(started) and leftovers(server.pgid, server.tag) == []
    assert "serving on" in log.read_text()  # a log given by the caller is kept


def test_an_exit_before_ready_is_an_error_with_the_log():
    argv = [sys.executable, "-c", "import sys; print('no model named x'); sys.exit(3)"]
    with (
        pytest.raises(LaunchError, match=r"(?s)exited with code 3.*no model named x"),
        running("broken", argv, banner_url, 20),
    ):
        pass  # pragma: no cover


def test_a_server_that_never_answers_is_stopped_after_the_time_limit():
    argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    no_answer = r"not ready within 0 s \(GET .* answered nothing\)"
    with (
        pytest.raises(LaunchError, match=no_answer),
        running("silent", argv, "http://127.0.0.1:9/", 0.3),
    ):
        pass  # pragma: no cover


def test_stop_signal_goes_to_the_leader_first(tmp_path):
    """The leader gets ``stop_signal`` (SIGINT here, as PyTriton needs) and may exit cleanly."""
    script = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGINT, lambda *_: (print('clean stop', flush=True), sys.exit(0)))\n"
        "print('up', flush=True)\n"
        "time.sleep(60)\n"
    )
    log = tmp_path / "server.log"

    def up(server):
        return "ok" if "up" in server.log_text() else None

    with running("sigint", [sys.executable, "-c", script], up, 20, log_path=log,
                 stop_signal=signal.SIGINT):  # fmt: skip
        pass
    assert "clean stop" in log.read_text()


def test_cpu_lists_as_taskset_writes_them():
    assert cpu_list("0-2,5") == (0, 1, 2, 5)
    assert cpu_list([3, 1]) == (3, 1)
    assert cpu_list("1") == (1,)
