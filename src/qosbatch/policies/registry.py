"""Policies by name: spec strings like ``dynamic:max_batch_size=16,max_queue_delay_ms=5``.

A spec is a policy name, optionally followed by ``:`` and comma-separated
``knob=value`` pairs, where the knobs are the keyword arguments of the policy's
constructor (the peers' names: see docs/policies.md). A list of specs for the CLI
separates policies with commas too; a part containing ``=`` but no ``:`` belongs
to the policy before it, so ``slo,dynamic:max_batch_size=16,max_queue_delay_ms=5,aimd``
is three policies. Every mistake is a UserError naming the policy, the knob and
what was expected.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qosbatch.core.errors import UserError
from qosbatch.policies.aimd import AimdPolicy
from qosbatch.policies.base import Policy, PolicyFactory
from qosbatch.policies.dynamic import DynamicPolicy
from qosbatch.policies.fixed import FixedPolicy
from qosbatch.policies.learned import AgentPolicy
from qosbatch.policies.queue_optimal import QueueOptimalPolicy
from qosbatch.policies.single import SinglePolicy
from qosbatch.policies.slo import SloPolicy

POLICIES: dict[str, type] = {
    "single": SinglePolicy,
    "fixed": FixedPolicy,
    "dynamic": DynamicPolicy,
    "aimd": AimdPolicy,
    "slo": SloPolicy,
    "queue-optimal": QueueOptimalPolicy,
    "rl": AgentPolicy,  # rl:agent.zip, a trained agent (qosbatch train)
}


@dataclass(frozen=True)
class PolicySpec:
    """A policy name and its knob values, already converted to the constructor's types."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The spec as text, for tables and JSON (``dynamic:max_batch_size=16,...``)."""
        if not self.params:
            return self.name
        return f"{self.name}:" + ",".join(f"{k}={_show(v)}" for k, v in self.params.items())

    def with_params(self, **params: Any) -> PolicySpec:
        return make_spec(self.name, {**self.params, **params})

    def factory(self) -> PolicyFactory:
        cls = POLICIES[self.name]
        params = dict(self.params)

        if getattr(cls, "serves_all_models", False):
            # One object for every model of the run: it schedules them together (rl).
            shared: Policy = cls(**params, rng=np.random.default_rng(0))
            return lambda rng: shared

        def build(rng: np.random.Generator) -> Policy:
            return cls(**params, rng=rng)  # type: ignore[no-any-return]

        build(np.random.default_rng(0))  # fail now, on the knobs, not mid-simulation
        return build


def knobs(name: str) -> dict[str, tuple[Any, Any]]:
    """The knobs of policy ``name``: knob -> (type, default)."""
    cls = POLICIES[name]
    # The class's signature rather than __init__'s, and the default's type where no hint is
    # left: a class compiled by mypyc (``make compiled``) keeps only those.
    hints = typing.get_type_hints(cls.__init__) if inspect.isfunction(cls.__init__) else {}
    return {
        p.name: (hints.get(p.name) or type(p.default), p.default)
        for p in inspect.signature(cls).parameters.values()
        if p.name != "rng"
    }


def make_spec(name: str, params: dict[str, Any]) -> PolicySpec:
    if name not in POLICIES:
        raise UserError(f"unknown policy {name!r}; choose one of {', '.join(POLICIES)}")
    table = knobs(name)
    for key in params:
        if key not in table:
            raise UserError(
                f"policy {name} has no knob {key!r}; its knobs are {', '.join(table) or 'none'}"
            )
    spec = PolicySpec(name, dict(params))
    spec.factory()
    return spec


def parse_policy(text: str) -> PolicySpec:
    """One spec: ``name`` or ``name:knob=value,...``."""
    name, _, rest = text.strip().partition(":")
    name = name.strip()
    if name not in POLICIES:
        raise UserError(f"unknown policy {name!r}; choose one of {', '.join(POLICIES)}")
    if name == "rl" and rest.strip() and "=" not in rest:
        rest = f"agent={rest.strip()}"  # rl:agent.zip, the file's path as the one knob
    table = knobs(name)
    params: dict[str, Any] = {}
    for part in (p.strip() for p in rest.split(",")):
        if not part:
            continue
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq:
            raise UserError(f"policy {name}: expected knob=value, got {part!r}")
        if key not in table:
            raise UserError(
                f"policy {name} has no knob {key!r}; its knobs are {', '.join(table) or 'none'}"
            )
        if key in params:
            raise UserError(f"policy {name}: knob {key!r} given twice")
        params[key] = _convert(name, key, value.strip(), table[key][0])
    return make_spec(name, params)


def parse_policy_list(text: str) -> list[PolicySpec]:
    """Comma-separated specs; ``knob=value`` parts attach to the policy before them."""
    groups: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if "=" in part and ":" not in part:
            if not groups:
                raise UserError(f"policy list {text!r} starts with a knob, not a policy name")
            groups[-1] += "," + part
        else:
            groups.append(part)
    if not groups:
        raise UserError("no policy given")
    return [parse_policy(g) for g in groups]


def _convert(name: str, key: str, text: str, kind: Any) -> Any:
    optional = False
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        optional = len(args) < len(typing.get_args(kind))
        kind = args[0]
    if optional and text.lower() in ("none", ""):
        return None
    if typing.get_origin(kind) is typing.Literal:
        choices = typing.get_args(kind)
        if text not in choices:
            raise UserError(
                f"policy {name}: {key} must be one of {', '.join(choices)}, got {text!r}"
            )
        return text
    try:
        if kind is bool:
            low = text.lower()
            if low not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return low in ("true", "1", "yes")
        if kind is int:
            return int(text)
        if kind is float:
            value = float(text)
            if math.isnan(value):
                raise ValueError
            return value
    except ValueError:
        what = {bool: "true or false", int: "an integer", float: "a number"}[kind]
        raise UserError(f"policy {name}: {key} must be {what}, got {text!r}") from None
    return text


def _show(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).lower() if isinstance(value, bool) else str(value)
