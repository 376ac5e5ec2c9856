"""Workload spec strings: ``kind:key=value,...`` -> a seeded generator of traces.

Grammar (docs/simulator.md has the full table)::

    poisson:rate=100,duration_s=60,slo_ms=100
    mmpp:rates=50/400,switch_s=5/1,duration_s=120,slo=netdelay,base_ms=200,delay_ms=30
    mmpp:rates=50/400,switch_s=5/1,duration_s=120,slo=netdelay:base_ms=200,delay_ms=30
    diurnal:rate=100,amplitude=0.5,period_s=60,duration_s=120,slo=uniform,lo_ms=50,hi_ms=150
    step:rates=50/200/50,at_s=0/20/40,duration_s=60,slo_ms=100
    trace:path=t.csv                      (replay; SLO keys, if any, override the file's)

Lists use ``/``. Arrival keys and SLO keys have distinct names, so ``slo=KIND:key=v``
and ``slo=KIND,key=v`` mean the same. ``model=a/b,mix=0.7/0.3`` draws each
request's model with those weights (default: the one loaded profile's model).
Every mistake is a UserError naming the key and what was expected.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from qosbatch.core.errors import UserError
from qosbatch.workloads import arrivals, slos
from qosbatch.workloads.trace import Trace, read_trace

_NUM, _LIST, _STR, _INT = "number", "list of numbers (a/b/...)", "text", "integer"

ARRIVAL_KEYS: dict[str, dict[str, str]] = {
    "poisson": {"rate": _NUM, "duration_s": _NUM, "requests": _INT},
    "mmpp": {"rates": _LIST, "switch_s": _LIST, "duration_s": _NUM},
    "diurnal": {"rate": _NUM, "amplitude": _NUM, "period_s": _NUM, "duration_s": _NUM},
    "step": {"rates": _LIST, "at_s": _LIST, "duration_s": _NUM},
    "trace": {"path": _STR},
}
_REQUIRED: dict[str, tuple[str, ...]] = {
    "poisson": ("rate",),
    "mmpp": ("rates", "switch_s", "duration_s"),
    "diurnal": ("rate", "period_s", "duration_s"),
    "step": ("rates", "at_s", "duration_s"),
    "trace": ("path",),
}
SLO_KEYS: dict[str, dict[str, str]] = {
    "fixed": {"slo_ms": _NUM},
    "uniform": {"lo_ms": _NUM, "hi_ms": _NUM},
    "netdelay": {"base_ms": _NUM, "delay_ms": _NUM, "delay_sigma": _NUM},
}
_COMMON = {"model": _STR, "mix": _LIST, "slo": _STR}


@dataclass(frozen=True)
class WorkloadSpec:
    """A parsed workload: arrival process, SLO generator, model mix, and a load factor."""

    kind: str
    params: dict[str, Any]
    slo: str | None  # "fixed" | "uniform" | "netdelay", or None (a trace's own budgets)
    slo_params: dict[str, float]
    models: tuple[str, ...] = ()
    mix: tuple[float, ...] = ()
    load: float = 1.0  # arrival rates multiplied by this (a trace's times divided)
    text: str = field(default="", compare=False)

    def scaled(self, factor: float) -> WorkloadSpec:
        """The same workload with every arrival rate times ``factor``."""
        if not factor > 0:
            raise UserError(f"a load factor must be > 0, got {factor}")
        return replace(self, load=self.load * factor)

    @property
    def mean_rate(self) -> float | None:
        """Long-run arrival rate in requests/s (None for a trace: read it to know)."""
        p = self.params
        if self.kind in ("poisson", "diurnal"):
            base = p["rate"]
        elif self.kind == "mmpp":
            base = arrivals.mmpp_mean_rate(p["rates"], p["switch_s"])
        elif self.kind == "step":
            base = arrivals.step_mean_rate(p["rates"], p["at_s"], p["duration_s"])
        else:
            return None
        return float(base) * self.load

    def generate(self, rng: np.random.Generator, default_model: str | None = None) -> Trace:
        """Draw one trace. ``default_model`` names the model when the spec does not."""
        p, load = self.params, self.load
        own_slo: np.ndarray | None = None  # a replayed trace's budgets, unless SLO keys override
        priority: np.ndarray | None = None  # and its priority levels, if it has them
        if self.kind == "trace":
            base = read_trace(p["path"]).scaled(load)
            own_slo, priority = base.slo_ms, base.priority
            if not self.models:
                slo = own_slo if self.slo is None else self._budgets(rng, len(base))
                return Trace(base.time_s, base.model, base.models, slo, base.priority)
            times = base.time_s
        elif self.kind == "poisson":
            if "requests" in p:
                times = arrivals.poisson_count(rng, p["rate"] * load, p["requests"])
            else:
                times = arrivals.poisson(rng, p["rate"] * load, p["duration_s"])
        elif self.kind == "mmpp":
            rates = [r * load for r in p["rates"]]
            times = arrivals.mmpp(rng, rates, p["switch_s"], p["duration_s"])
        elif self.kind == "diurnal":
            times = arrivals.diurnal(
                rng, p["rate"] * load, p.get("amplitude", 0.5), p["period_s"], p["duration_s"]
            )
        else:
            rates = [r * load for r in p["rates"]]
            times = arrivals.step(rng, rates, p["at_s"], p["duration_s"])
        n = len(times)
        if n == 0:
            raise UserError(f"workload {self.text or self.kind} produced no requests")
        models = self.models or ((default_model,) if default_model else ())
        if not models:
            raise UserError("the workload does not name its model: add model=NAME")
        if len(models) == 1:
            codes = np.zeros(n, dtype=np.int64)
        else:
            weights = np.array(self.mix or [1.0] * len(models))
            codes = rng.choice(len(models), size=n, p=weights / weights.sum()).astype(np.int64)
        slo = own_slo if self.slo is None and own_slo is not None else self._budgets(rng, n)
        return Trace(np.asarray(times, dtype=float), codes, tuple(models), slo, priority)

    def _budgets(self, rng: np.random.Generator, n: int) -> np.ndarray:
        q = self.slo_params
        if self.slo == "fixed":
            return slos.fixed(n, q["slo_ms"])
        if self.slo == "uniform":
            return slos.uniform(rng, n, q["lo_ms"], q["hi_ms"])
        return slos.netdelay(rng, n, q["base_ms"], q["delay_ms"], q.get("delay_sigma", 0.5))


def parse_workload(text: str) -> WorkloadSpec:
    """Parse a spec string (module docstring); errors name the key and the expectation."""
    kind, _, rest = text.strip().partition(":")
    kind = kind.strip()
    if kind not in ARRIVAL_KEYS:
        raise UserError(
            f"unknown workload kind {kind!r} in {text!r}; choose one of {', '.join(ARRIVAL_KEYS)}"
        )
    raw: dict[str, str] = {}
    for part in _split(rest):
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or not key:
            raise UserError(f"workload: expected key=value, got {part!r} in {text!r}")
        if key == "slo" and ":" in value:
            value, _, inner = value.partition(":")
            key2, eq2, value2 = inner.partition("=")
            if not eq2:
                raise UserError(f"workload: expected slo=KIND:key=value, got {part!r}")
            _put(raw, key2.strip(), value2)
        _put(raw, key, value)
    allowed = {**ARRIVAL_KEYS[kind], **_COMMON}
    for keys in SLO_KEYS.values():
        allowed.update(keys)
    unknown = [k for k in raw if k not in allowed]
    if unknown:
        raise UserError(
            f"workload {kind}: unknown key {unknown[0]!r}; {kind} takes "
            f"{', '.join(ARRIVAL_KEYS[kind])}, model, mix, and SLO keys "
            f"(slo_ms | slo=uniform,lo_ms,hi_ms | slo=netdelay,base_ms,delay_ms,delay_sigma)"
        )
    values = {k: _value(k, v, allowed[k]) for k, v in raw.items()}
    params = {k: v for k, v in values.items() if k in ARRIVAL_KEYS[kind]}
    slo_kind, slo_params = _slo(kind, values)
    models = tuple(m for m in str(values.get("model", "")).split("/") if m.strip())
    mix = tuple(values.get("mix", ()))
    _check(kind, params, models, mix)
    return WorkloadSpec(kind, params, slo_kind, slo_params, models, mix, text=text.strip())


def _split(rest: str) -> list[str]:
    return [p for p in (s.strip() for s in rest.split(",")) if p]


def _put(raw: dict[str, str], key: str, value: str) -> None:
    if key in raw:
        raise UserError(f"workload: key {key!r} given twice")
    raw[key] = value.strip()


def _value(key: str, text: str, kind: str) -> Any:
    try:
        if kind == _NUM:
            value: Any = float(text)
            ok = math.isfinite(value)
        elif kind == _INT:
            value = int(text)
            ok = value >= 1
        elif kind == _LIST:
            value = [float(x) for x in text.split("/")]
            ok = all(math.isfinite(x) for x in value)
        else:
            value, ok = text, bool(text)
    except ValueError:
        ok = False
    if not ok:
        raise UserError(f"workload: {key} must be a {kind}, got {text!r}")
    return value


def _slo(kind: str, values: dict[str, Any]) -> tuple[str | None, dict[str, float]]:
    given = {k: v for k, v in values.items() if any(k in keys for keys in SLO_KEYS.values())}
    slo_kind = values.get("slo")
    if slo_kind is None:
        matches = [name for name, keys in SLO_KEYS.items() if set(given) & set(keys)]
        if len(matches) > 1:
            raise UserError(f"workload: SLO keys of {' and '.join(matches)} mixed; pick one")
        slo_kind = matches[0] if matches else None
    if slo_kind is None:
        if kind == "trace":
            return None, {}
        raise UserError(
            "workload: no latency budget; add slo_ms=N "
            "(or slo=uniform,lo_ms=A,hi_ms=B or slo=netdelay,base_ms=B,delay_ms=D)"
        )
    if slo_kind not in SLO_KEYS:
        raise UserError(f"workload: unknown slo {slo_kind!r}; choose one of {', '.join(SLO_KEYS)}")
    foreign = [k for k in given if k not in SLO_KEYS[slo_kind]]
    if foreign:
        raise UserError(f"workload: slo={slo_kind} does not take {foreign[0]!r}")
    need = {"fixed": ("slo_ms",), "uniform": ("lo_ms", "hi_ms"), "netdelay": ("base_ms",)}
    missing = [k for k in need[slo_kind] if k not in given]
    if missing:
        raise UserError(f"workload: slo={slo_kind} needs {', '.join(missing)}")
    q = {k: float(v) for k, v in given.items()}
    if slo_kind == "fixed" and q["slo_ms"] <= 0:
        raise UserError(f"workload: slo_ms must be > 0, got {q['slo_ms']}")
    if slo_kind == "uniform" and not 0 < q["lo_ms"] <= q["hi_ms"]:
        raise UserError(f"workload: need 0 < lo_ms <= hi_ms, got {q['lo_ms']}, {q['hi_ms']}")
    if slo_kind == "netdelay":
        q.setdefault("delay_ms", 0.0)
        q.setdefault("delay_sigma", 0.5)
        if q["base_ms"] <= 0 or q["delay_ms"] < 0 or q["delay_sigma"] < 0:
            raise UserError("workload: netdelay needs base_ms > 0, delay_ms >= 0, delay_sigma >= 0")
    return slo_kind, q


def _check(kind: str, p: dict[str, Any], models: tuple[str, ...], mix: tuple[float, ...]) -> None:
    missing = [k for k in _REQUIRED[kind] if k not in p]
    if kind == "poisson" and "duration_s" not in p and "requests" not in p:
        missing.append("duration_s (or requests)")
    if missing:
        raise UserError(f"workload {kind}: missing {', '.join(missing)}")
    if "duration_s" in p and not p["duration_s"] > 0:
        raise UserError(f"workload {kind}: duration_s must be > 0, got {p['duration_s']}")
    for key in ("rate", "period_s"):
        if key in p and not p[key] > 0:
            raise UserError(f"workload {kind}: {key} must be > 0, got {p[key]}")
    if "amplitude" in p and not 0 <= p["amplitude"] <= 1:
        raise UserError(f"workload {kind}: amplitude must be in [0, 1], got {p['amplitude']}")
    if "rates" in p:
        rates = p["rates"]
        if any(r < 0 for r in rates) or not any(r > 0 for r in rates):
            raise UserError(f"workload {kind}: rates must be >= 0 and not all 0, got {rates}")
        other = "switch_s" if kind == "mmpp" else "at_s"
        if len(p[other]) != len(rates):
            raise UserError(
                f"workload {kind}: {other} needs one value per rate "
                f"({len(rates)} rates, {len(p[other])} values)"
            )
    if kind == "mmpp" and any(s <= 0 for s in p["switch_s"]):
        raise UserError("workload mmpp: switch_s (mean time in each state) must be > 0")
    if kind == "step":
        at = p["at_s"]
        if at[0] != 0 or any(b <= a for a, b in itertools.pairwise(at)):
            raise UserError(f"workload step: at_s must start at 0 and increase, got {at}")
    if mix and len(mix) != len(models):
        raise UserError(f"workload: mix needs one weight per model ({len(models)} models)")
    if mix and (any(w < 0 for w in mix) or sum(mix) <= 0):
        raise UserError("workload: mix weights must be >= 0 and not all 0")
