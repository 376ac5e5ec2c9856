"""The M/G(a,b)/1/N bulk-service queue of dynamic batching, solved numerically.

Poisson arrivals at ``rate``; one server (a model replica) that, when free and
at least ``a`` requests wait, takes min(waiting, b) of them as one batch;
otherwise it idles until the a-th arrives. At most ``N`` requests wait; an
arrival that finds N waiting is blocked. The batch of k takes S_k.

Method (docs/queueing.md has the derivation and its checks):
1. the chain X = number waiting just after a batch completes, on {0..N}:
   from i, the batch is r(i) = max(a, min(i, b)), q0(i) = max(i, a) - r(i) stay,
   and the next state is min(q0 + J, N), J ~ arrivals during S_r;
2. its stationary law pi (a linear solve);
3. the time-average law of the number waiting, from the expected time spent at
   each level during idle periods and during services (semi-regenerative);
4. blocking by PASTA, throughput, Little's law for the wait, and the service
   time a request sees (batch-size biased) for the latency.
Pure numpy/scipy; milliseconds per solve at N = 256.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from threadpoolctl import ThreadpoolController

from qosbatch.queueing.service import ServiceTime, arrivals_during_service, as_service_time


@dataclass(frozen=True)
class QueueResult:
    """What the queue does in steady state. Times in seconds."""

    rate: float  # offered arrival rate (1/s)
    a: int
    b: int
    capacity: int  # N
    mean_latency: float  # arrival to completion, admitted requests
    mean_wait: float  # arrival to batch start, admitted requests
    mean_service: float  # service time of the batch a request rides in
    blocking_probability: float  # share of arrivals that find N waiting
    throughput: float  # admitted (= completed) requests per second
    mean_batch_size: float  # per batch
    utilization: float  # share of time the server is busy
    mean_queue_length: float  # time-average number waiting (not in service)
    queue_length_distribution: NDArray[np.float64]  # p(n), n = 0..N, time average
    departure_distribution: NDArray[np.float64]  # pi(i): waiting just after a completion
    mean_memory: float | None = None  # time-average memory of the batch in service


class KappaTable:
    """kappa_r for every batch size r that a solve may use, computed once per rate.

    The optimizer solves thousands of (a, b) pairs at one rate; they share these.
    """

    def __init__(self, rate: float, service: ServiceTime, capacity: int, max_batch: int) -> None:
        self.rate = rate
        self.capacity = capacity
        self.mean = np.zeros(max_batch + 1)
        self.kappa = np.zeros((max_batch + 1, capacity + 1))
        for k in range(1, max_batch + 1):
            mean = float(service.mean_s(k))
            if not np.isfinite(mean) or mean <= 0:
                raise ValueError(
                    f"service_time must be positive, got {mean!r} s for a batch of {k}"
                )
            self.mean[k] = mean
            self.kappa[k] = arrivals_during_service(
                rate, mean, service.family, service.cv_at(k), capacity + 1
            )
        # Tail sums: kappa_sf[r, m] = P(J >= m), so P(next = N) needs no loop.
        self.kappa_sf = np.concatenate(
            [np.ones((max_batch + 1, 1)), 1.0 - np.cumsum(self.kappa, axis=1)], axis=1
        )
        np.clip(self.kappa_sf, 0.0, 1.0, out=self.kappa_sf)


def check_arguments(rate: float, a: int, b: int, capacity: int) -> None:
    if not (isinstance(rate, int | float) and np.isfinite(rate) and rate > 0):
        raise ValueError(f"rate must be a number > 0 (arrivals per second), got {rate!r}")
    for name, value in (("a", a), ("b", b), ("N", capacity)):
        if not isinstance(value, int | np.integer) or isinstance(value, bool):
            raise ValueError(f"{name} must be an integer, got {value!r}")
    if a < 1:
        raise ValueError(f"a must be an integer >= 1, got {a}")
    if b < a:
        raise ValueError(f"b must be >= a ({a}), got {b}")
    if capacity < b:
        raise ValueError(f"N (capacity) must be >= b ({b}), got {capacity}")


def solve(
    rate: float,
    a: int,
    b: int,
    N: int,  # the queueing literature's name for the capacity
    service_time: ServiceTime | Callable[[int], float],
    memory: Callable[[int], float] | None = None,
) -> QueueResult:
    """Steady state of M/G(a,b)/1/N. ``service_time``: k -> mean seconds, or a ServiceTime."""
    check_arguments(rate, a, b, N)
    table = KappaTable(float(rate), as_service_time(service_time), N, b)
    return solve_with_table(table, a, b, memory)


def solve_with_table(
    table: KappaTable, a: int, b: int, memory: Callable[[int], float] | None = None
) -> QueueResult:
    return solve_many(table, [a], b, memory)[0]


def solve_many(
    table: KappaTable,
    a_values: Sequence[int],
    b: int,
    memory: Callable[[int], float] | None = None,
) -> list[QueueResult]:
    """Solve every (a, b) for one b at once: one stacked linear solve instead of many.

    Everything is an array with a leading axis over ``a_values``; the optimizer
    solves the 64 values of a for each b this way, sharing the kappa table.
    BLAS runs on one thread here: these systems are too small to gain from more,
    and a multi-threaded OpenBLAS that finds a core busy spins, turning a 1 ms
    solve into 150 ms (measured on this 2-core machine beside a simulation).
    """
    with _single_threaded_blas():
        return _solve_many(table, a_values, b, memory)


@functools.cache
def _blas_controller() -> ThreadpoolController:
    return ThreadpoolController()


def _single_threaded_blas() -> Any:
    return _blas_controller().limit(limits=1, user_api="blas")


def _solve_many(
    table: KappaTable,
    a_values: Sequence[int],
    b: int,
    memory: Callable[[int], float] | None,
) -> list[QueueResult]:
    n = table.capacity
    lam = table.rate
    a = np.asarray(a_values, dtype=int)[:, None]  # (m, 1)
    states = np.arange(n + 1)
    idle = states[None, :] < a  # (m, N+1): states from which the server idles until a arrive

    # 1-2. Transition matrices and their stationary laws. From i >= a the batch is
    # r = min(i, b) and q0 = i - r stay: rows that do not depend on a, built once per b.
    # From i < a the batch is a and nobody stays: row i is kappa_a. Next state q0 + j
    # takes kappa_r(j) below N, and N takes the tail P(J >= N - q0).
    r_busy = np.maximum(np.minimum(states, b), 1)
    q0_busy = states - np.minimum(states, b)
    j = states[None, :n] - q0_busy[:, None]
    below = j >= 0
    j = np.where(below, j, 0)
    base = np.zeros((n + 1, n + 1))
    base[:, :n] = np.where(below, table.kappa[r_busy[:, None], j], 0.0)
    base[:, n] = table.kappa_sf[r_busy, n - q0_busy]
    idle_rows = np.concatenate([table.kappa[a[:, 0], :n], table.kappa_sf[a[:, 0], n, None]], 1)
    if a.shape[0] <= _STACKED_SOLVE_MAX:
        transition = np.where(idle[:, :, None], idle_rows[:, None, :], base[None, :, :])
        pi = stationary(transition)  # (m, N+1)
    else:
        pi = stationary_by_trailing_blocks(base, idle_rows, a[:, 0])

    # 3. Time-average number waiting: the expected time spent at each level per cycle.
    r = np.where(idle, a, r_busy[None, :])
    mean_s = table.mean[r]
    idle_s = np.where(idle, (a - states[None, :]) / lam, 0.0)
    cycle_s = np.sum(pi * (idle_s + mean_s), axis=1)  # (m,)
    # Idle from i up to a-1 spends 1/rate at each level.
    level_time = np.where(idle, np.cumsum(pi, axis=1) / lam, 0.0)
    # alpha_j(r) = E[time during one service with exactly j arrivals so far] = P(J > j) / rate;
    # busy time at level c = sum_i pi_i alpha_{c - q0_i}(r_i), the same split of rows as above.
    alpha = table.kappa_sf[:, 1:] / lam
    alpha_base = np.where(below, alpha[r_busy[:, None], j], 0.0)  # (N+1, N)
    pi_idle = np.where(idle, pi, 0.0)
    busy = (pi - pi_idle) @ alpha_base + pi_idle.sum(axis=1, keepdims=True) * alpha[a[:, 0], :n]
    level_time[:, :n] += busy
    level_time[:, n] += np.sum(pi * mean_s, axis=1) - busy.sum(axis=1)
    dist = np.maximum(level_time, 0.0)
    dist /= dist.sum(axis=1, keepdims=True)

    # 4. What users care about.
    served_per_cycle = np.sum(pi * r, axis=1)  # pi sums to 1: one batch per cycle
    throughput = served_per_cycle / cycle_s  # = rate * (1 - blocking): checked in the tests
    queue_len = dist @ np.arange(n + 1)
    wait = queue_len / throughput
    service = np.sum(pi * r * mean_s, axis=1) / served_per_cycle
    busy_s = np.sum(pi * mean_s, axis=1)
    mem: NDArray | None = None
    if memory is not None:
        mem_k = np.array([0.0] + [float(memory(k)) for k in range(1, table.mean.size)])
        mem = np.sum(pi * mean_s * mem_k[r], axis=1) / cycle_s
    return [
        QueueResult(
            rate=lam,
            a=int(a[i, 0]),
            b=b,
            capacity=n,
            mean_latency=float(wait[i] + service[i]),
            mean_wait=float(wait[i]),
            mean_service=float(service[i]),
            blocking_probability=float(dist[i, n]),
            throughput=float(throughput[i]),
            mean_batch_size=float(served_per_cycle[i]),
            utilization=float(busy_s[i] / cycle_s[i]),
            mean_queue_length=float(queue_len[i]),
            queue_length_distribution=dist[i],
            departure_distribution=pi[i],
            mean_memory=None if mem is None else float(mem[i]),
        )
        for i in range(a.shape[0])
    ]


_STACKED_SOLVE_MAX = 4  # above this many values of a, one UL factorization serves them all


def stationary_by_trailing_blocks(
    base: NDArray[np.float64], idle_rows: NDArray[np.float64], a_values: NDArray[np.int_]
) -> NDArray[np.float64]:
    """Stationary laws for many a at one b, from one factorization of I - base.

    For a given a, states i < a all have the same row v_a (idle until a arrive,
    then serve a), and states H = {a..N} have the rows of ``base``, whatever a
    is. So pi_H = s * v_a[H] (I - base[H, H])^-1 with s = sum(pi_L), and
    pi_L(i) = s * v_a(i) + pi_H @ base[H, i]. Every I - base[H, H] is a
    trailing principal block of I - base; eliminating states from N down (the
    order of Grassmann, Taksar and Heyman's algorithm, with its subtraction-free
    pivots) factors all of them at once, leaving two triangular solves per a.
    """
    from scipy.linalg import solve_triangular

    size = base.shape[0]
    packed = gth_factor((np.eye(size) - base)[::-1, ::-1])  # reversed: trailing -> leading
    out = np.empty((len(a_values), size))
    for row, a in enumerate(a_values):
        k = size - a  # states a..N, reversed to the leading k
        v = idle_rows[row]
        w = v[a:][::-1]
        z = solve_triangular(packed[:k, :k], w, trans="T", lower=False)
        y = solve_triangular(packed[:k, :k], z, trans="T", lower=True, unit_diagonal=True)
        pi_h = y[::-1]  # pi_H / s
        pi_l = v[:a] + pi_h @ base[a:, :a]  # pi_L / s
        pi = np.concatenate([pi_l, pi_h])
        out[row] = np.maximum(pi, 0.0) / np.maximum(pi, 0.0).sum()
    return out


def gth_factor(matrix: NDArray[np.float64]) -> NDArray[np.float64]:
    """LU without pivoting of a generator-like matrix (rows sum to 0), L and U packed.

    Each pivot is taken as minus the sum of the rest of its row in the current
    Schur complement (which also sums to 0), not by subtraction: no cancellation
    even when a state almost never leaves itself. The last pivot (state 0) is
    never used.
    """
    work = matrix.copy()
    size = work.shape[0]
    for k in range(size - 1):
        work[k, k] = -work[k, k + 1 :].sum()
        work[k + 1 :, k] /= work[k, k]
        work[k + 1 :, k + 1 :] -= np.outer(work[k + 1 :, k], work[k, k + 1 :])
    return work


def stationary(transition: NDArray[np.float64]) -> NDArray[np.float64]:
    """pi with pi P = pi and sum(pi) = 1, for one matrix or a stack of them.

    (P^T - I) pi = 0 has one redundant equation; the last is swapped for sum(pi) = 1.
    """
    n = transition.shape[-1]
    system = np.swapaxes(transition, -1, -2) - np.eye(n)
    system[..., -1, :] = 1.0
    rhs = np.zeros(transition.shape[:-1])
    rhs[..., -1] = 1.0
    pi = np.linalg.solve(system, rhs[..., None])[..., 0]
    pi = np.maximum(pi, 0.0)  # round-off can leave -1e-17 in states the chain never visits
    return pi / pi.sum(axis=-1, keepdims=True)
