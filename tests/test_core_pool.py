"""The CPU pool batches draw from: lent per batch, returned on completion, listeners woken."""

import pytest

from qosbatch.serve.core_pool import CorePool


def test_cpus_are_lent_lowest_first_and_come_back_with_a_wake_up():
    pool = CorePool((3, 1, 2))
    woken = []
    pool.listen(lambda: woken.append(1))
    assert pool.take("a", 2) == (1, 2) and pool.free == 1
    assert pool.take("b", 1) == (3,) and pool.free == 0
    assert pool.holds("a") and not pool.holds("c")
    assert pool.give("a") == 2 and woken == [1] and pool.free == 2
    assert pool.give("a") == 0 and woken == [1]  # nothing held: nothing to announce
    assert pool.take("c", 2) == (1, 2)


def test_misuse_is_refused():
    with pytest.raises(ValueError, match="distinct"):
        CorePool((0, 0))
    pool = CorePool((0, 1))
    with pytest.raises(ValueError, match="3 CPUs asked for, 2 free"):
        pool.take("a", 3)
    pool.take("a", 1)
    with pytest.raises(ValueError, match="already holds"):
        pool.take("a", 1)
    with pytest.raises(ValueError):
        pool.take("b", 0)
