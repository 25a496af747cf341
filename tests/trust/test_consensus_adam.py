"""The consensus terms of Li et al. 2023 (eq. 5.2, 5.4a) under Adam: the proximal step that F2A2 takes by default
(``algo.penalty=proximal``) against the penalty added to the gradient Adam normalises (``algo.penalty=gradient``),
on quadratics ``J_i(w) = 1/2 ||w - c_i||^2`` whose consensus point is known, through the functions the F2A2
algorithms call (:func:`trustmarl.algos.f2a2.penalty_grads` and :func:`trustmarl.algos.f2a2.tie_copies`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from trustmarl.algos import f2a2
from trustmarl.trust import consensus as C

# three agents, two coordinates; per coordinate the mean and the median of the c_i agree: (0.5, 1.0)
TARGETS = np.array([[-1.0, 3.0], [0.5, 1.0], [2.0, -1.0]], np.float32)
LR = 0.01  # Adam's step size


def test_proximal_pull_is_the_closed_form_minimiser():
    """``argmin_u <lambda, u - v> + beta/2 (u - v)^2 + (u - w)^2 / (2 eta)`` by hand: w=1, v=0, lambda=0.5, beta=2,
    eta=0.25 gives (1 + 0.5*0 - 0.125) / 1.5 = 7/12; the objective's derivative vanishes there."""
    u = C.proximal_pull({"q": jnp.array([1.0])}, {"q": jnp.array([0.0])}, {"q": jnp.array([0.5])}, 2.0, 0.25)["q"]
    np.testing.assert_allclose(np.asarray(u), [7 / 12], rtol=1e-6)
    np.testing.assert_allclose(0.5 + 2.0 * (7 / 12 - 0.0) + (7 / 12 - 1.0) / 0.25, 0.0, atol=1e-12)


def _adam_consensus(cfg: f2a2.ConsensusFields, steps: int = 3000):
    """Adam on every agent's own J_i plus what ``penalty_grads`` adds, then one ``tie_copies`` event per step."""
    protocol = cfg._protocol(3)
    c = jnp.asarray(TARGETS)
    w0 = f2a2.copies_of(jnp.zeros(2), 3)
    cons0 = C.init(jax.random.PRNGKey(0), w0, protocol, beta=cfg.beta)
    tx = optax.adam(LR)

    def body(carry, k):
        w, opt, cons = carry
        grads = (w - c) + f2a2.penalty_grads(cfg, cons, w)  # eq. 5.4a (penalty=gradient: the terms ride in Adam)
        upd, opt = jax.vmap(tx.update)(grads, opt)
        w, cons = f2a2.tie_copies(cfg, cons, w + upd, k, protocol)  # penalty=proximal: the exact step, then eq. 5.4c/d
        return (w, opt, cons), None

    keys = jax.random.split(jax.random.PRNGKey(1), steps)
    (w, _, cons), _ = jax.jit(lambda: jax.lax.scan(body, (w0, jax.vmap(tx.init)(w0), cons0), keys))()
    return np.asarray(w), np.asarray(cons.dual)


def test_under_adam_the_proximal_step_reaches_consensus_and_the_gradient_penalty_winds_up():
    """Default (proximal, beta=1, eta=0.1): every copy ends at the consensus point (0.5, 1.0) and the duals settle
    where the pull cancels Adam's unit step at the optimum, lambda_i = -lr sign(grad J_i(w*)) / eta: agent 0 (c below
    w* in x, above in y) at (-0.1, +0.1), agent 2 at (+0.1, -0.1). The old reading (beta=1 added to the gradient
    Adam normalises) winds up: the copies end more than 1 apart and the duals pass 100 (measured 1.56 and 240)."""
    w, lam = _adam_consensus(f2a2.ConsensusFields())
    np.testing.assert_allclose(w, np.broadcast_to([0.5, 1.0], (3, 2)), atol=5e-3)
    np.testing.assert_allclose(lam[[0, 2]], [[-LR / 0.1, LR / 0.1], [LR / 0.1, -LR / 0.1]], atol=5e-3)

    w_old, lam_old = _adam_consensus(f2a2.ConsensusFields(penalty="gradient"))
    assert np.max(np.linalg.norm(w_old - w_old.mean(0), axis=1)) > 1.0
    assert np.max(np.abs(lam_old)) > 100.0
