"""Policies by name: spec strings like ``dynamic:max_batch_size=16,max_queue_delay_ms=5``.

A spec is a policy name, optionally followed by ``:`` and comma-separated
``knob=value`` pairs, where the knobs are the keyword arguments of the policy's
constructor (the peers' names: see docs/policies.md). A list of specs for the CLI
separates policies with commas too; a part containing ``=`` but no ``:`` belongs
to the policy before it, so ``slo,dynamic:max_batch_size=16,max_queue_delay_ms=5,aimd``
is three policies. Every mistake is a UserError naming the policy, the knob and
what was expected.

A user's own policy is named by where it lives, ``module:Class`` (as uvicorn names
an app), with knobs after a second ``:``: ``mypkg.policies:Greedy:batch=8``. The
module is imported from the current directory or ``sys.path``; its constructor's
keyword arguments are its knobs, as for ours. Checking that it keeps the contract
(``qosbatch.sim.check``) needs the simulator, a layer up: the CLI does it.
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
import sys
import types
import typing
from dataclasses import dataclass, field
from functools import partial
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
        cls = policy_class(self.name)
        params = dict(self.params)
        if "rng" in inspect.signature(cls).parameters:  # (ours all take one; a user's may not)
            make = partial(cls, **params)
        else:
            make = lambda rng: cls(**params)  # noqa: E731

        if getattr(cls, "serves_all_models", False):
            # One object for every model of the run: it schedules them together (rl).
            shared: Policy = make(rng=np.random.default_rng(0))
            return lambda rng: shared

        def build(rng: np.random.Generator) -> Policy:
            return make(rng=rng)  # type: ignore[no-any-return]

        try:
            build(np.random.default_rng(0))  # fail now, on the knobs, not mid-simulation
        except UserError:
            raise
        except Exception as exc:  # a user's constructor may raise anything
            raise UserError(f"policy {self.label}: building it failed: {exc!r}") from None
        return build


def is_user_policy(name: str) -> bool:
    """``module:Class``, a user's policy, rather than one of ours."""
    return ":" in name


def policy_class(name: str) -> type:
    """Our policy ``name``, or a user's ``module:Class`` imported now."""
    if not is_user_policy(name):
        if name not in POLICIES:
            raise UserError(
                f"unknown policy {name!r}; choose one of {', '.join(POLICIES)}, "
                "or name your own as module:Class"
            )
        return POLICIES[name]
    module_name, _, attr = name.partition(":")
    added = os.getcwd() not in sys.path  # (a console script's path does not hold the cwd)
    if added:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise UserError(
            f"policy {name}: no module {exc.name!r} (run from its directory or put it on "
            "PYTHONPATH)"
        ) from None
    except Exception as exc:  # the user's module raised while importing
        raise UserError(f"policy {name}: importing {module_name} failed: {exc!r}") from None
    finally:
        if added:
            sys.path.remove(os.getcwd())
    cls = getattr(module, attr, None)
    if cls is None:
        raise UserError(f"policy {name}: module {module_name} has no {attr!r}")
    if not isinstance(cls, type):
        raise UserError(f"policy {name}: {attr} is a {type(cls).__name__}, not a class")
    for method in ("decide", "observe"):
        if not callable(getattr(cls, method, None)):
            raise UserError(
                f"policy {name}: {attr} has no {method}() (the Policy interface is in "
                "qosbatch.policies.base)"
            )
    return cls


def knobs(name: str) -> dict[str, tuple[Any, Any]]:
    """The knobs of policy ``name``: knob -> (type, default)."""
    cls = policy_class(name)
    # The class's signature rather than __init__'s, and the default's type where no hint is
    # left: a class compiled by mypyc (``make compiled``) keeps only those.
    try:
        hints = typing.get_type_hints(cls.__init__) if inspect.isfunction(cls.__init__) else {}
    except Exception:  # (a user's annotation that does not resolve: the defaults' types)
        hints = {}
    return {
        p.name: (hints.get(p.name) or type(p.default), p.default)
        for p in inspect.signature(cls).parameters.values()
        if p.name != "rng"
    }


def make_spec(name: str, params: dict[str, Any]) -> PolicySpec:
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
    """One spec: ``name`` or ``name:knob=value,...``; ``module:Class[:knob=value,...]``."""
    name, _, rest = text.strip().partition(":")
    name = name.strip()
    attr, _, after = rest.partition(":")
    if name not in POLICIES and attr.strip().isidentifier():  # module:Class, a user's
        name, rest = f"{name}:{attr.strip()}", after
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
        if "=" in part and ":" not in part.partition("=")[0]:
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
