"""Every packaged preset must validate for the algorithm and environments it applies to."""

from __future__ import annotations

import pytest
import yaml

from trustmarl.algos import algo_config_class, algo_names
from trustmarl.experiment.config import PRESET_DIR, ConfigError, build_config, preset_files

# one representative task per family that has presets (host families need their extras)
TASKS = {
    "mpe": ["mpe/simple_spread"],
    "smax": ["smax/3m", "smax/3s5z"],
    "mamujoco": ["mamujoco/halfcheetah_2x3", "mamujoco/walker2d_2x3", "mamujoco/humanoid_17x1",
                 "mamujoco/many_segment_swimmer_10x2", "mamujoco/hopper_3x1"],
}


def _preset_cases():
    for path in sorted(PRESET_DIR.rglob("*.yaml")):
        algo = path.name.split(".")[0] if path.parent == PRESET_DIR else path.parent.name  # <algo>[.<variant>].yaml
        yield algo, path


@pytest.mark.parametrize("algo,path", list(_preset_cases()), ids=lambda x: str(x).split("configs/")[-1])
def test_preset_is_valid_yaml_for_a_known_algorithm(algo, path):
    assert algo in algo_names(), f"{path} is for unknown algorithm {algo!r}"
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict) and set(data) <= {"algo", "env", "total_steps", "num_seeds", "seed", "eval_every", "eval_episodes",
                                                   "checkpoint_keep"}
    unused = set(data.get("algo") or {}) & set(algo_config_class(algo).UNUSED)
    assert not unused, f"{path} sets keys {algo} does not use: {sorted(unused)}"


def test_setting_a_key_the_algorithm_ignores_is_an_error(tmp_path):
    """HATRPO takes CG steps, so a PPO clip range or actor learning rate would be silently ignored."""
    for key, words in (("algo.clip_eps", "kl_threshold"), ("algo.actor_lr", "critic_lr"), ("algo.epochs", "line search")):
        with pytest.raises(ConfigError, match=rf"{key} is not used by hatrpo: .*{words}"):
            build_config("hatrpo", "mpe/simple_spread", {key: 1})
    f = tmp_path / "mine.yaml"
    f.write_text("algo:\n  vf_coef: 0.5\n")
    with pytest.raises(ConfigError, match=r"algo.vf_coef is not used by happo"):
        build_config("happo", "mpe/simple_spread", config_file=f)
    assert build_config("mappo", "mpe/simple_spread", {"algo.vf_coef": 0.5}).algo.vf_coef == 0.5


@pytest.mark.parametrize("family,tasks", list(TASKS.items()))
def test_presets_build_for_every_algorithm(family, tasks):
    if family == "mamujoco":
        pytest.importorskip("gymnasium_robotics")
    for algo in algo_names():
        for env in tasks:
            build_config(algo, env)  # raises ConfigError on any stale key or bad value
            files = [p.name for p in preset_files(algo, env)]
            if (PRESET_DIR / algo / f"{family}.yaml").exists():
                assert f"{family}.yaml" in files


def test_task_preset_overrides_family_preset():
    assert build_config("hatrpo", "mamujoco/hopper_3x1").algo.kl_threshold == pytest.approx(1e-3)
    assert build_config("hatrpo", "mamujoco/halfcheetah_2x3").algo.kl_threshold == pytest.approx(1e-2)
    assert build_config("happo", "mamujoco/halfcheetah_2x3").algo.epochs == 15
    assert build_config("happo", "smax/3s5z").algo.gamma == pytest.approx(0.95)
    assert build_config("happo", "smax/3m").algo.gamma == pytest.approx(0.99)
    # user overrides beat every preset
    assert build_config("hatrpo", "mamujoco/walker2d_2x3", {"algo.kl_threshold": 0.02}).algo.kl_threshold == 0.02


def test_paper_preset_variant_selects_the_papers_exact_values():
    """MaMuJoCo defaults are HARL's settings (they learn); --preset paper layers Kuba et al. 2022's
    Tables 3-4/6 on top; an unknown variant names the available ones."""
    default = build_config("happo", "mamujoco/halfcheetah_2x3").algo
    paper = build_config("happo", "mamujoco/halfcheetah_2x3", preset="paper").algo
    assert (default.actor_lr, default.num_envs, default.rollout_len, default.hidden_sizes) == (5e-4, 20, 200, (128, 128, 128))
    assert (paper.actor_lr, paper.critic_lr, paper.num_envs, paper.rollout_len, paper.hidden_sizes, paper.clip_eps,
            paper.epochs) == (5e-6, 5e-3, 4, 1000, (64,), 0.3, 5)
    assert [p.name for p in preset_files("hatrpo", "mamujoco/walker2d_2x3", "paper")][-2:] == [
        "mamujoco.paper.yaml", "mamujoco_walker2d_2x3.paper.yaml"]
    assert build_config("hatrpo", "mamujoco/walker2d_2x3", preset="paper").algo.kl_threshold == pytest.approx(1e-3)
    assert build_config("hatrpo", "mamujoco/halfcheetah_2x3", preset="paper").algo.kl_threshold == pytest.approx(1e-4)
    with pytest.raises(ConfigError, match=r"--preset 'papr': no such preset for happo on mamujoco/halfcheetah_2x3; available: paper"):
        build_config("happo", "mamujoco/halfcheetah_2x3", preset="papr")
    with pytest.raises(ConfigError, match=r"available: jaxmarl"):
        build_config("happo", "mpe/simple_spread", preset="paper")
    with pytest.raises(ConfigError, match=r"available: none"):
        build_config("happo", "smax/3m", preset="paper")


def test_preset_flag_on_the_command_line(tmp_path, capsys):
    from trustmarl.experiment.cli import main

    assert main(["train", "happo", "mpe/simple_spread", "--preset", "paper", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--preset 'paper'" in err[0] and not (tmp_path / "r").exists()


def _layers_beneath(path):
    """The preset files applied before ``path`` on its own task (see ``preset_files``); variant files
    (``<...>.<variant>.yaml``) come after every base layer of their level."""
    algo = path.stem if path.parent == PRESET_DIR else path.parent.name
    base, _, variant = path.name[: -len(".yaml")].partition(".")
    chain = [PRESET_DIR / f"{algo}.yaml"]
    if path.parent != PRESET_DIR:
        family = base.split("_", 1)[0]
        chain += [PRESET_DIR / algo / f"{family}.yaml"] if base != family else []
        chain.append(PRESET_DIR / algo / f"{base}.yaml")
    if variant:
        chain += [c.with_suffix(f".{variant}.yaml") for c in chain]
    return algo, [c for c in chain if c.exists() and c != path]


@pytest.mark.parametrize("path", [p for p in sorted(PRESET_DIR.rglob("*.yaml")) if p.name.count(".") == 1],
                         ids=lambda p: str(p).split("configs/")[-1])
def test_presets_state_only_what_differs_from_the_layer_beneath(path):
    """A base preset that restates a default hides what is special about the task and goes stale when the
    default changes. Named variants (``--preset paper``, ``--preset jaxmarl``) are exempt: they pin a
    paper's or another library's complete settings, on purpose independent of our defaults."""
    import dataclasses

    from trustmarl.experiment.config import _field_types, coerce, load_yaml

    algo, chain = _layers_beneath(path)
    cls = algo_config_class(algo)
    types = _field_types(cls)
    values = {f"algo.{f.name}": getattr(cls(name=algo), f.name) for f in dataclasses.fields(cls)}
    for layer in chain:
        values.update(load_yaml(layer))
    restated = [k for k, v in load_yaml(path).items() if k.startswith("algo.") and k in values
                and coerce(k, v, types[k[5:]]) == coerce(k, values[k], types[k[5:]])]
    assert not restated, f"{path.name} restates the value beneath it for {restated}"
