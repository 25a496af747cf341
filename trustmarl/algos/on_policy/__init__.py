"""The on-policy actor-critic family: MAPPO, IPPO, JR-PPO (``ppo``), HAPPO (``happo``), HATRPO (``hatrpo``)."""
