"""The off-policy family: MADDPG and MATD3 (``maddpg``), MAAC (``maac``) on the shared engine (``engine``)."""
