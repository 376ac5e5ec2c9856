"""A Ray replica's core claim on its node: no overlap, freed on close or death, all or nothing.

No Ray here: the claim is plain files and flock, the same on any node.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap

from qosbatch.deploy import pinning
from qosbatch.deploy.pinning import claim_cores, pin_replica


def test_two_claimers_never_share_a_core(tmp_path):
    a = claim_cores(2, tmp_path, range(4))
    b = claim_cores(2, tmp_path, range(4))
    assert a is not None and b is not None
    assert a.cpus == (0, 1) and b.cpus == (2, 3)


def test_a_closed_claim_frees_its_cores(tmp_path):
    a = claim_cores(3, tmp_path, range(4))
    assert a is not None
    assert claim_cores(2, tmp_path, range(4)) is None
    a.close()
    b = claim_cores(2, tmp_path, range(4))
    assert b is not None and b.cpus == (0, 1)


def test_a_claim_that_cannot_be_met_holds_nothing(tmp_path):
    a = claim_cores(3, tmp_path, range(4))
    assert claim_cores(2, tmp_path, range(4)) is None  # one core free, two asked
    last = claim_cores(1, tmp_path, range(4))  # the failed claim let go of core 3
    assert a is not None and last is not None and last.cpus == (3,)


def test_a_dead_process_frees_its_cores(tmp_path):
    child = textwrap.dedent(f"""
        import os, sys
        from pathlib import Path
        from qosbatch.deploy.pinning import claim_cores
        claim = claim_cores(2, Path({str(tmp_path)!r}), range(2))
        print(claim.cpus, flush=True)
        sys.stdin.read()  # held until the parent closes stdin
        os._exit(0)  # no close(): the kernel drops the locks
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", child], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "(0, 1)"
    assert claim_cores(1, tmp_path, range(2)) is None
    proc.communicate("", timeout=30)
    assert claim_cores(2, tmp_path, range(2)) is not None


def test_a_replica_pins_every_thread_or_runs_unpinned_with_one_warning(
    tmp_path, caplog, monkeypatch
):
    one = min(os.sched_getaffinity(0))
    child = textwrap.dedent("""
        import os, threading
        from qosbatch.deploy.pinning import pin_replica
        started = threading.Event()
        t = threading.Thread(target=lambda: started.wait(), daemon=True)
        t.start()  # a thread that exists before the pin, as Ray's do
        claim = pin_replica("model-x", 1, "s1")
        later = []
        u = threading.Thread(target=lambda: later.append(os.sched_getaffinity(0)))
        u.start(); u.join()
        print(claim.cpus, os.sched_getaffinity(0), os.sched_getaffinity(t.native_id), later[0])
        started.set()
    """)
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", child], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.split() == [f"({one},)", f"{{{one}}}", f"{{{one}}}", f"{{{one}}}"], out
    # Every core of this process claimed by others: unpinned, and said once.
    monkeypatch.setattr(pinning, "claim_dir", lambda session: tmp_path / session)
    before = os.sched_getaffinity(0)
    held = claim_cores(len(before), tmp_path / "s2", sorted(before))
    with caplog.at_level(logging.WARNING, logger="qosbatch.deploy.pinning"):
        assert pin_replica("model-x", 1, "s2") is None
    assert os.sched_getaffinity(0) == before and held is not None
    assert [r.getMessage() for r in caplog.records] == [
        f"qosbatch: model-x: fewer than 1 of this node's {len(before)} CPU(s) are free of "
        "other replicas' claims; running unpinned"
    ]
