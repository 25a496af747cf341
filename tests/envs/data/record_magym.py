"""How ``magym_402763c_episodes.npz`` was made: episodes of MA-Gym's own Checkers / Switch2 / Switch4.

Provenance for ``tests/envs/test_grid.py`` (not run by the tests). MA-Gym (Koul 2019, Apache-2.0) at
commit 402763c (the 2020 version the MATRL paper used) needs old ``gym``; it was run with tiny stubs
for ``gym.Env``, ``gym.spaces`` and ``gym.utils.seeding`` on the path and empty ``ma_gym/__init__.py``
and ``ma_gym/envs/__init__.py`` (they only register gym ids):

    git -C ma-gym archive 402763c ma_gym | tar x
    PYTHONPATH=stubs:. python record_magym.py magym_402763c_episodes.npz

Checkers: uniformly random moves (10% no-op). Switch: each agent moves along a shortest path to its
target with probability 0.8 (Switch2) / 0.55 (Switch4), else uniformly, so that arrivals happen.
Arrays per env: actions [E, T, n] int8 (padded with no-ops), obs [E, T + 1, n, d] (reset first),
rewards [E, T, n], dones [E, T] (MA-Gym's all(dones)), lengths [E].
"""
import numpy as np, sys
from ma_gym.envs.checkers.checkers import Checkers
from ma_gym.envs.switch.switch_one_corridor import Switch
MOVES = [(1,0),(0,-1),(-1,0),(0,1)]
def switch_dist(target):
    free = np.zeros((3,7), bool); free[1,:] = True; free[:, [0,1,5,6]] = True
    dist = np.full((3,7), 99); dist[target] = 0; frontier=[target]
    while frontier:
        nxt=[]
        for (r,c) in frontier:
            for dr,dc in MOVES:
                q=(r+dr,c+dc)
                if 0<=q[0]<3 and 0<=q[1]<7 and free[q] and dist[q]==99:
                    dist[q]=dist[r,c]+1; nxt.append(q)
        frontier=nxt
    return dist
TARGETS=[(0,6),(0,0),(2,6),(2,0)]
DISTS=[switch_dist(t) for t in TARGETS]
def guided(env, rng, n, p):
    acts=[]
    for i in range(n):
        r,c = env.agent_pos[i]
        if rng.random() < p:
            best = min(range(4), key=lambda k: DISTS[i][min(max(r+MOVES[k][0],0),2), min(max(c+MOVES[k][1],0),6)] if (0<=r+MOVES[k][0]<3 and 0<=c+MOVES[k][1]<7) else 99)
            acts.append(best)
        else:
            acts.append(int(rng.integers(0,5)))
    return np.array(acts)
def record(make, n_agents, episodes, seed, max_len, p_noop=0.1, p_guided=0.0):
    rng = np.random.default_rng(seed)
    out = dict(actions=[], obs=[], rewards=[], dones=[], lengths=[])
    for e in range(episodes):
        env = make()
        obs = [env.reset()]
        acts, rews, dones = [], [], []
        for t in range(max_len):
            if p_guided > 0:
                a = guided(env, rng, n_agents, p_guided)
            else:
                a = rng.integers(0, 4, size=n_agents)
                a = np.where(rng.random(n_agents) < p_noop, 4, a)
            o, r, d, _ = env.step(list(int(x) for x in a))
            acts.append(a); obs.append(o); rews.append(r); dones.append(all(d))
            if all(d): break
        L = len(acts)
        pad = max_len - L
        out["actions"].append(np.pad(np.array(acts, np.int8), ((0,pad),(0,0)), constant_values=4))
        out["obs"].append(np.pad(np.array(obs, np.float32), ((0,pad),(0,0),(0,0))))
        out["rewards"].append(np.pad(np.array(rews, np.float32), ((0,pad),(0,0))))
        out["dones"].append(np.pad(np.array(dones), (0,pad)))
        out["lengths"].append(L)
    return {k: np.array(v) for k, v in out.items()}
data = {}
for name, make, n, L in [("checkers", lambda: Checkers(), 2, 100), ("switch2", lambda: Switch(n_agents=2, step_cost=-0.1), 2, 50), ("switch4", lambda: Switch(n_agents=4, step_cost=-0.1), 4, 50)]:
    d = record(make, n, 16, 0, L, p_guided={"checkers": 0.0, "switch2": 0.8, "switch4": 0.55}[name])
    for k, v in d.items(): data[f"{name}_{k}"] = v
    print(name, d["lengths"], d["rewards"].sum(axis=(1)).round(2).tolist()[:3])
np.savez_compressed(sys.argv[1], **data)
