"""JAX-native multi-agent environments and the registry."""

from trustmarl.envs.base import AgentGroup, Box, Discrete, MultiAgentEnv, TimeStep
from trustmarl.envs.registry import describe, env_defaults, env_names, make, register

# Importing the modules registers their environments.
from trustmarl.envs import grid as _grid  # noqa: F401,E402
from trustmarl.envs import matrix as _matrix  # noqa: F401,E402
from trustmarl.envs import mpe as _mpe  # noqa: F401,E402
from trustmarl.envs import jaxmarl_adapter as _jaxmarl  # noqa: F401,E402  (lazy: jaxmarl imported on use)

__all__ = [
    "AgentGroup", "Box", "Discrete", "MultiAgentEnv", "TimeStep",
    "describe", "env_defaults", "env_names", "make", "register",
]
