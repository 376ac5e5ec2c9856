"""The systems of the comparison, by name; a peer whose module is absent is left out."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from benchmarks.peers.systems import System

_WHERE = {
    "qosbatch": ("qosbatch_server", "QosbatchServer"),
    "qosbatch-dynamic": ("qosbatch_server", "QosbatchDynamic"),
    "triton": ("triton", "Triton"),
    "ray": ("ray_serve", "RayServe"),
    "bentoml": ("bentoml_peer", "BentoMLPeer"),
    "mlserver": ("mlserver_peer", "MLServerPeer"),
}
SYSTEMS: dict[str, Callable[[], System]] = {}
for _name, (_module, _cls) in _WHERE.items():
    try:
        SYSTEMS[_name] = getattr(importlib.import_module(f"benchmarks.peers.{_module}"), _cls)
    except ModuleNotFoundError as _exc:
        if _exc.name != f"benchmarks.peers.{_module}":
            raise
