"""The loop that drives environments outside JAX (host environments) with trustmarl's algorithms."""

from trustmarl.rollout.host import HostTrainer, placeholder_timestep, state_template

__all__ = ["HostTrainer", "placeholder_timestep", "state_template"]
