"""HATRPO's conjugate gradient: Fisher-vector products as a Hessian-vector product of the mean KL
(``make_fvp``) vs the J^T F J product HATRPO uses (``fisher_outer_product``), MPE-sized batch.

    .venv/bin/python benchmarks/bench_fvp.py
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from trustmarl.trust.natural import conjugate_gradient, fisher_outer_product, flatten, make_fvp  # noqa: E402
B, D, H, A = 2048, 18, 64, 5
k = jax.random.split(jax.random.PRNGKey(0), 4)
obs = jax.random.normal(k[0], (B, D))
p = {"w1": jax.random.normal(k[1], (D, H)) * 0.3, "w2": jax.random.normal(k[2], (H, H)) * 0.2, "w3": jax.random.normal(k[3], (H, A)) * 0.1}
flat, unravel = flatten(p)
def dist(x):
    q = unravel(x); h = jnp.tanh(jnp.tanh(obs @ q["w1"]) @ q["w2"]); return (jax.nn.log_softmax(h @ q["w3"]),)
old = dist(flat)
w = jnp.full((B,), 1.0 / B)
def mean_kl(x):
    return jnp.sum(jnp.sum(jnp.exp(old[0]) * (old[0] - dist(x)[0]), -1) * w)
g = jax.random.normal(k[0], flat.shape)
hess = jax.jit(lambda g: conjugate_gradient(make_fvp(mean_kl, flat, 0.1), g, 10))
gn = jax.jit(lambda g: conjugate_gradient(fisher_outer_product(dist, flat, lambda d: (jnp.exp(old[0]) * d[0] * w[:, None],), 0.1), g, 10))
print("max |difference| of the CG solutions:", float(np.abs(hess(g) - gn(g)).max()))
for name, f in [("hvp", hess), ("gn", gn)] * 2:
    f(g).block_until_ready(); t = time.perf_counter()
    for _ in range(20): f(g).block_until_ready()
    print(name, round((time.perf_counter() - t) / 20 * 1000, 2), "ms per 10-iteration CG")
