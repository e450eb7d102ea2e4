"""A local Kubernetes API server with simulated Flux controllers. The product never imports this package."""
from __future__ import annotations

from flux_monitor_hook.sandbox.sandbox import Sandbox

__all__ = ['Sandbox']
