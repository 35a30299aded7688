"""RW weights and DS counts against hand-computed cases (PROTOCOL section 4)."""

import numpy as np
import pytest

from fairser.debias.weights import ds_select, rw_weights


def test_rw_weights_match_hand_computation():
    # class 0: groups 0,0,0,1 -> n_c = 4, G_c = 2, n_00 = 3, n_01 = 1
    # class 1: group 1 only (cell (1, 0) empty) -> n_c = 2, G_c = 1, n_11 = 2
    labels = [0, 0, 0, 0, 1, 1]
    groups = [0, 0, 0, 1, 1, 1]
    expected = [4 / (2 * 3)] * 3 + [4 / (2 * 1)] + [2 / (1 * 2)] * 2
    np.testing.assert_allclose(rw_weights(labels, groups), expected)


def test_rw_gives_every_nonempty_cell_equal_weight_within_its_class():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, 300)
    groups = rng.integers(0, 32, 300)  # k = 32: many empty (class, group) cells
    w = rw_weights(labels, groups)
    assert w.sum() == pytest.approx(300)
    for c in range(6):
        cells = {g: w[(labels == c) & (groups == g)].sum() for g in np.unique(groups[labels == c])}
        np.testing.assert_allclose(list(cells.values()), np.sum(labels == c) / len(cells))


def test_ds_draws_the_smallest_nonempty_cell_count_from_each_group():
    # class 0: cells of 3 and 1 -> 1 each; class 1: a single group of 2 (empty cell ignored) -> 2
    labels = np.array([0, 0, 0, 0, 1, 1])
    groups = np.array([0, 0, 0, 1, 1, 1])
    keep = ds_select(labels, groups, np.random.default_rng(0))
    cells = sorted(zip(labels[keep], groups[keep]))
    assert cells == [(0, 0), (0, 1), (1, 1), (1, 1)]
    assert len(set(keep)) == len(keep) and np.all(np.diff(keep) > 0)


def test_ds_with_many_empty_cells_balances_each_class():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 6, 500)
    groups = rng.integers(0, 32, 500)
    keep = ds_select(labels, groups, np.random.default_rng(2))
    for c in range(6):
        present = np.unique(groups[labels == c])
        m_c = min(np.sum((labels == c) & (groups == g)) for g in present)
        kept = [np.sum((labels[keep] == c) & (groups[keep] == g)) for g in present]
        assert kept == [m_c] * len(present)


def test_ds_is_seeded():
    labels = np.repeat([0, 1], 50)
    groups = np.tile([0, 0, 0, 1], 25)
    a = ds_select(labels, groups, np.random.default_rng(5))
    b = ds_select(labels, groups, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("labels, groups", [([0, 1], [0]), ([[0, 1]], [[0, 1]])],
                         ids=["lengths differ", "not 1-d"])
def test_labels_and_groups_must_be_equal_1d_arrays(labels, groups):
    with pytest.raises(ValueError, match=r"must be equal 1-d shapes"):
        rw_weights(labels, groups)


def test_ds_of_an_empty_training_set_is_an_empty_index():
    keep = ds_select(np.array([], dtype=int), np.array([], dtype=int), np.random.default_rng(0))
    assert keep.shape == (0,) and keep.dtype == np.int64
