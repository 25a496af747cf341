"""Rollout loops that drive environments outside JAX (host environments) with trustmarl's algorithms."""

from trustmarl.rollout.host import HostTrainer, evaluate_host, placeholder_timestep, state_template

__all__ = ["HostTrainer", "evaluate_host", "placeholder_timestep", "state_template"]
