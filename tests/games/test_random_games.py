"""Random 2x2 game families (Pangallo et al. 2017) drawn as the MATRL reference code draws them."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trustmarl.games.random_games import FAMILIES, random_game, random_games
from trustmarl.games.two_by_two import nash_equilibria

# Games 0 and 199 of each family as the reference code (matrix_games/stateless_games.py, create_game)
# returns them, flattened [P1[0,0], P1[0,1], P1[1,0], P1[1,1], P2[0,0], P2[0,1], P2[1,0], P2[1,1]].
REFERENCE = {
    ("coordination", 0): [2.411649429368285, 0.5488135039273248, 1.8667662463713883, 1.2640028702997443,
                          1.0695489124055608, 0.4236547993389047, 0.4375872112626925, 1.3293602120447723],
    ("coordination", 199): [2.880888279345527, 0.6547916946341458, 2.0367356775107353, 1.6368309794036555,
                            1.0086854168857537, 0.4638423503844957, 0.619477841643889, 0.9513146303532739],
    ("anticoordination", 0): [-1.5488135039273248, -0.7367703393213251, -0.8336241375549053, -0.7791358192552156,
                              0.6458941130666561, 1.0834813243293486, 1.855435761283109, 0.8917730007820798],
    ("anticoordination", 199): [-1.6547916946341457, 1.5703764344506665, -0.6727524098646359, 0.6263681748261863,
                                0.5448430665012579, 1.1643209081451469, 1.3128322016777627, 0.33183678870938493],
    ("cyclic", 0): [-1.102135391940387, 1.012958091862179, 1.1458941130666562, 0.916591815812076,
                    1.3179527424440634, 0.7151893663724195, 0.5448831829968969, 0.9685379823358016],
    ("cyclic", 199): [-0.9828952823368691, 0.9497116034659305, 1.044843066501258, 0.8516120621690928,
                      1.3819439828765894, 0.9820392847695097, 0.8441526018347918, 1.3079949522192875],
}


@pytest.mark.parametrize("family, seed", sorted(REFERENCE))
def test_games_are_the_reference_codes_bit_for_bit(family, seed):
    np.testing.assert_array_equal(random_game(family, seed).reshape(-1), np.array(REFERENCE[(family, seed)]))


def test_family_structure_on_200_seeds():
    """Coordination: pure NE on the diagonal + a mixed one; anti-coordination: off the diagonal + mixed;
    cyclic: one mixed NE only (the reference code's assertions hold, so no game is skipped)."""
    expected_pure = {"coordination": [True, False, False, True], "anticoordination": [False, True, True, False], "cyclic": [False] * 4}
    with jax.enable_x64(True):
        for family in FAMILIES:
            games = random_games(family, range(200))
            p1, p2 = games[:, 0], games[:, 1]
            if family == "coordination":
                assert np.all((p1[:, 0, 0] > p1[:, 1, 0]) & (p1[:, 1, 1] > p1[:, 0, 1]) & (p2[:, 0, 0] > p2[:, 0, 1]) & (p2[:, 1, 1] > p2[:, 1, 0]))
            cands, valid = jax.jit(jax.vmap(nash_equilibria))(jnp.asarray(games))
            valid = np.asarray(valid)
            np.testing.assert_array_equal(valid[:, :4], np.broadcast_to(expected_pure[family], (200, 4)))
            assert np.all(valid[:, 4])  # the interior mixed equilibrium
            mixed = np.asarray(cands)[:, 4]
            assert np.all((mixed > 0) & (mixed < 1))
    with pytest.raises(ValueError, match="family"):
        random_game("zero_sum", 0)
