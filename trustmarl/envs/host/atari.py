"""Two-player Atari Pong (PettingZoo ``pong_v3`` on the Multi-Agent ALE) as a host env: Wen et al. 2021, Figure 6.

``pettingzoo/pong`` is zero-sum: +1 to the player who scores, -1 to the other (the team mean is always 0,
so runs report each player's return). Observations go through :class:`RamObservations`: the console's
128-byte RAM scaled to ``[0, 1]`` (float32), a CPU-sized input for an MLP (``obs_type=ram``, the default), or
the screen in grayscale resized to 84x84 and flattened (``obs_type=grayscale84``: the paper's images, but
without colour and without a CNN torso, which is not built yet); the global state is the RAM
(the env's own state, the 210x160x3 screen, would make every rollout 100 kB per step). ``frame_skip=k``
repeats each joint action on ``k`` frames and sums the rewards (it stops early when the game ends).

The ROM comes with the ``ale-py`` wheel (``ale_py/roms/pong.bin``); nothing is downloaded. Install with
``pip install 'trustmarl[atari]'`` (PettingZoo's Atari extra, ``multi-agent-ale-py``, and ``ale-py``).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from trustmarl.envs.host import MissingExtraError

_EXTRA_MSG = ("two-player Pong needs PettingZoo's Atari support (multi-agent-ale-py) and ale-py, whose wheel "
              "ships the ROM: pip install 'trustmarl[atari]'")
OBS_TYPES = ("ram", "grayscale84")
IMAGE_SIZE = 84


def rom_dir() -> str:
    """The folder of ROMs inside the installed ``ale-py`` wheel (``pong.bin`` is there)."""
    try:
        import ale_py
    except ImportError as err:
        raise MissingExtraError(f"{_EXTRA_MSG} ({err})") from err
    return os.path.join(os.path.dirname(ale_py.__file__), "roms")


def _require() -> None:
    try:
        import multi_agent_ale_py  # noqa: F401
        from pettingzoo.atari import pong_v3  # noqa: F401
    except ImportError as err:
        raise MissingExtraError(f"{_EXTRA_MSG} ({err})") from err
    rom_dir()


def grayscale84(frame: np.ndarray) -> np.ndarray:
    """A ``[210, 160(, 1)]`` uint8 grayscale frame resized (bilinear) to 84x84, / 255, flattened: ``[7056]`` float32."""
    from PIL import Image

    img = Image.fromarray(np.asarray(frame, np.uint8).reshape(np.shape(frame)[:2]))
    return (np.asarray(img.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR), np.float32) / 255.0).reshape(-1)


class RamObservations:
    """A PettingZoo Parallel env with RAM observations: every observation (and the state) is the RAM / 255
    as float32; ``frame_skip`` frames per step with the rewards summed. With ``image=True`` (the env built
    with ``obs_type="grayscale_image"``) the observations are the screen as :func:`grayscale84` (the state
    stays the RAM, read from the emulator)."""

    def __init__(self, env: Any, frame_skip: int = 1, image: bool = False):
        import gymnasium.spaces as spaces

        self.env, self.frame_skip, self.image = env, int(frame_skip), image
        self.possible_agents = list(env.possible_agents)
        self._box = spaces.Box(0.0, 1.0, (IMAGE_SIZE * IMAGE_SIZE if image else 128,), np.float32)
        self.state_space = spaces.Box(0.0, 1.0, (128,), np.float32)
        self._ram = np.zeros(128, np.float32)
        self.metadata = getattr(env, "metadata", {})

    @property
    def agents(self) -> list[str]:
        return self.env.agents

    def observation_space(self, agent: str):
        return self._box

    def action_space(self, agent: str):
        return self.env.action_space(agent)

    def _scale(self, obs: dict) -> dict:
        if self.image:
            self._ram = np.asarray(self.env.unwrapped.ale.getRAM(), np.float32) / 255.0
            return {a: grayscale84(o) for a, o in obs.items()}
        out = {a: np.asarray(o, np.float32) / 255.0 for a, o in obs.items()}
        if out:
            self._ram = next(iter(out.values()))
        return out

    def reset(self, seed: int | None = None, options: dict | None = None):
        obs, infos = self.env.reset(seed=seed, options=options)
        return self._scale(obs), infos

    def step(self, actions: dict):
        total = {a: 0.0 for a in actions}
        for _ in range(self.frame_skip):
            obs, rewards, terms, truncs, infos = self.env.step(actions)
            for a, r in rewards.items():
                total[a] = total.get(a, 0.0) + float(r)
            if any(terms.values()) or any(truncs.values()) or not self.env.agents:
                break
        return self._scale(obs), total, terms, truncs, infos

    def state(self) -> np.ndarray:
        return self._ram.copy()

    def render(self):
        return self.env.render()

    def close(self) -> None:
        self.env.close()


@dataclasses.dataclass(frozen=True)
class PongFactory:
    """Picklable factory of ``pettingzoo/pong``; see the module docstring."""

    obs_type: str = "ram"  # ram: the 128-byte RAM / 255 | grayscale84: the screen in grayscale, 84x84, / 255 (flat)
    frame_skip: int = 1  # frames per step (rewards summed); 1 = every frame, as the authors' code
    full_action_space: bool = True  # 18 actions, as the authors' code (False: Pong's 6)
    max_cycles: int = 100_000  # frames after which the game is truncated (PettingZoo's default)
    render_mode: str | None = None

    def __post_init__(self) -> None:
        if self.obs_type not in OBS_TYPES:
            raise ValueError(f"obs_type={self.obs_type!r} is not available; choose one of {', '.join(OBS_TYPES)}")
        if isinstance(self.frame_skip, bool) or not isinstance(self.frame_skip, int) or self.frame_skip < 1:
            raise ValueError(f"frame_skip={self.frame_skip!r} must be an integer >= 1")

    def rendering(self) -> PongFactory:
        return dataclasses.replace(self, render_mode="rgb_array")

    def __call__(self) -> RamObservations:
        _require()
        from pettingzoo.atari import pong_v3

        image = self.obs_type == "grayscale84"
        env = pong_v3.parallel_env(obs_type="grayscale_image" if image else "ram", full_action_space=self.full_action_space,
                                   max_cycles=self.max_cycles, auto_rom_install_path=rom_dir(), render_mode=self.render_mode)
        return RamObservations(env, self.frame_skip, image)


def pong(**options: Any) -> PongFactory:
    """Factory for ``pettingzoo/pong`` (options: the :class:`PongFactory` fields); checks the packages at once."""
    factory = PongFactory(**options)
    _require()
    return factory
