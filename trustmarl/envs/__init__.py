"""JAX-native multi-agent environments and the registry."""

from trustmarl.envs.base import AgentGroup, Box, Discrete, MultiAgentEnv, TimeStep
from trustmarl.envs.registry import describe, env_defaults, env_names, make, register

# Importing the modules registers their environments.
from trustmarl.envs import grid as _grid  # noqa: F401,E402
from trustmarl.envs import matrix as _matrix  # noqa: F401,E402
from trustmarl.envs import mpe as _mpe  # noqa: F401,E402
from trustmarl.envs import jaxmarl_adapter as _jaxmarl  # noqa: F401,E402  (lazy: jaxmarl imported on use)


def to_pettingzoo(env_or_name, render_mode=None, **kwargs):
    """Any JAX-native env as a PettingZoo Parallel API env (see :mod:`trustmarl.envs.pettingzoo_wrapper`;
    needs the ``pettingzoo`` extra, imported on first use)."""
    from trustmarl.envs.pettingzoo_wrapper import to_pettingzoo as _to_pettingzoo

    return _to_pettingzoo(env_or_name, render_mode=render_mode, **kwargs)


__all__ = [
    "AgentGroup", "Box", "Discrete", "MultiAgentEnv", "TimeStep",
    "describe", "env_defaults", "env_names", "make", "register", "to_pettingzoo",
]
