import numpy as np
import pytest

from bigvolume.writing.downsample import mode_halve, plan_levels, smooth_halve_axis


def test_isotropic_plan_halves_every_axis_down_to_coarsest():
    steps = plan_levels((1000, 1000, 1000), (1.0, 1.0, 1.0), coarsest=256)
    assert steps == [(1, 1, 1), (2, 2, 2), (2, 2, 2)]  # 1000 -> 500 -> 250


def test_anisotropic_plan_halves_xy_first_until_near_isotropic():
    # z spacing 5x xy: xy is halved twice alone (1 -> 2 -> 4), then all axes together.
    steps = plan_levels((200, 4096, 4096), (5.0, 1.0, 1.0), coarsest=256)
    assert steps[:4] == [(1, 1, 1), (1, 2, 2), (1, 2, 2), (2, 2, 2)]
    shape = np.array([200, 4096, 4096])
    for step in steps[1:]:
        shape = -(-shape // np.array(step))
    assert shape.max() <= 256


def test_plan_never_halves_a_single_voxel_axis():
    steps = plan_levels((1, 2048, 2048), (1.0, 1.0, 1.0), coarsest=256)
    assert all(step[0] == 1 for step in steps)
    assert len(steps) == 4


def test_filter_keeps_constants_and_ramps_and_centres_outputs_between_inputs():
    ramp = np.arange(20, dtype=np.float32) * 2.0 + 7.0
    out = smooth_halve_axis(ramp, 0)
    assert out.shape == (10,)
    # Output k sits at input position 2k + 0.5; edges are mirrored so only the interior is exact.
    np.testing.assert_allclose(out[1:-1], 7.0 + 2.0 * (2 * np.arange(1, 9) + 0.5), rtol=1e-6)
    np.testing.assert_allclose(smooth_halve_axis(np.full(9, 3.5, np.float32), 0), np.full(5, 3.5))


def test_filter_removes_the_nyquist_pattern():
    # A plane alternating 0/1000 every voxel would alias into stripes with plain decimation.
    pattern = np.tile(np.array([0.0, 1000.0], np.float32), 64)
    out = smooth_halve_axis(pattern, 0)
    np.testing.assert_allclose(out, 500.0, atol=1e-3)
    assert np.ptp(pattern[::2]) == 0  # plain decimation would give a flat 0 image: the wrong mean


def test_filter_attenuates_half_nyquist_more_than_box_average():
    # A complex exponential measures the gain whatever the phase: |H| = cos^3(w/2) vs cos(w/2).
    x = np.arange(256)
    signal = np.exp(1j * np.pi / 2 * x).astype(np.complex64)  # period 4: the output's Nyquist frequency
    ours = np.abs(smooth_halve_axis(signal, 0)[2:-2])
    box = np.abs((signal[0::2] + signal[1::2])[2:-2] / 2)
    np.testing.assert_allclose(ours, np.cos(np.pi / 4) ** 3, rtol=1e-4)
    np.testing.assert_allclose(box, np.cos(np.pi / 4), rtol=1e-4)


def test_mode_keeps_the_majority_and_invents_no_label():
    block = np.zeros((2, 2, 2), np.uint16)
    block[0, 0, :] = 7
    block[1, 1, 1] = 9
    block[0, 1, 1] = 7
    assert mode_halve(block, (2, 2, 2)).tolist() == [[[0]]]  # four 0, three 7, one 9
    block[1, 0, 0] = 7
    assert mode_halve(block, (2, 2, 2)).tolist() == [[[7]]]
    labels = np.random.default_rng(0).choice([0, 3, 200], size=(9, 11, 13)).astype(np.uint8)
    out = mode_halve(labels, (2, 2, 2))
    assert out.shape == (5, 6, 7)
    assert set(np.unique(out)) <= {0, 3, 200}


@pytest.mark.parametrize("factors", [(1, 2, 2), (2, 1, 2), (1, 1, 2)])
def test_mode_with_anisotropic_factors(factors):
    labels = np.arange(4 * 6 * 8).reshape(4, 6, 8) % 5
    out = mode_halve(labels, factors)
    assert out.shape == tuple(-(-n // f) for n, f in zip(labels.shape, factors))
