"""Optimizers against hand-computed steps, torch.optim where available, clipping, state."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from graphrnn.training.optim import SGD, Adam, clip_global_norm, global_norm, make_optimizer


def one(value: float) -> dict[str, np.ndarray]:
    return {"w": np.array([value])}


def run_steps(opt, p0: float, grads: list[float]) -> list[float]:
    params = one(p0)
    out = []
    for g in grads:
        opt.step(params, one(g))
        out.append(float(params["w"][0]))
    return out


def test_sgd_plain_step():
    assert run_steps(SGD(lr=0.1), 1.0, [2.0, -1.0]) == pytest.approx([0.8, 0.9])


def test_sgd_momentum_hand_computed():
    # b1 = g = 1, p1 = 1 - 0.1 = 0.9; b2 = 0.9 * 1 + 1 = 1.9, p2 = 0.9 - 0.19 = 0.71
    assert run_steps(SGD(lr=0.1, momentum=0.9), 1.0, [1.0, 1.0]) == pytest.approx([0.9, 0.71])


def test_sgd_nesterov_hand_computed():
    # step 1: b = 1, d = 1 + 0.9 * 1 = 1.9, p = 0.81; step 2: b = 1.9, d = 1 + 1.71 = 2.71
    out = run_steps(SGD(lr=0.1, momentum=0.9, nesterov=True), 1.0, [1.0, 1.0])
    assert out == pytest.approx([0.81, 0.81 - 0.271])


def test_sgd_dampening_and_weight_decay():
    # dampening: b2 = 0.9 * 1 + 0.5 * 1 = 1.4
    out = run_steps(SGD(lr=0.1, momentum=0.9, dampening=0.5), 1.0, [1.0, 1.0])
    assert out == pytest.approx([0.9, 0.9 - 0.14])
    # weight decay 0.5: g_eff = 1 + 0.5 * 2 = 2
    assert run_steps(SGD(lr=0.1, weight_decay=0.5), 2.0, [1.0]) == pytest.approx([1.8])


def test_adam_first_steps_hand_computed():
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-8
    out = run_steps(Adam(lr=lr), 0.5, [2.0, -1.0])
    p1 = 0.5 - lr * 2.0 / (2.0 + eps)  # the first step is lr * sign(g)
    m2, v2 = b1 * 0.2 + 0.1 * -1.0, b2 * (0.001 * 4.0) + 0.001 * 1.0
    p2 = p1 - lr * (m2 / (1 - b1**2)) / (math.sqrt(v2 / (1 - b2**2)) + eps)
    assert out == pytest.approx([p1, p2], rel=1e-12)
    assert out[1] == pytest.approx(0.373366, abs=1e-6)


def test_adam_weight_decay_coupled_and_decoupled():
    coupled = run_steps(Adam(lr=0.1, weight_decay=1.0), 1.0, [0.0])
    assert coupled == pytest.approx([0.9])  # g_eff = 0 + 1 * p: one sign step
    decoupled = run_steps(Adam(lr=0.1, weight_decay=1.0, decoupled=True), 1.0, [0.0])
    assert decoupled == pytest.approx([0.9])  # p *= 1 - lr * wd; Adam step of 0 is 0
    assert run_steps(Adam(lr=0.1, weight_decay=1.0, decoupled=True), 1.0, [1.0]) == \
        pytest.approx([0.9 - 0.1])


@pytest.mark.parametrize("kind", ["sgd", "nesterov", "adam", "adamw"])
def test_matches_torch(kind):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    p0 = rng.standard_normal((3, 4))
    grads = [rng.standard_normal((3, 4)) for _ in range(5)]
    tp = torch.nn.Parameter(torch.tensor(p0))
    ours, theirs = {
        "sgd": (SGD(lr=0.05, momentum=0.8, weight_decay=0.1),
                torch.optim.SGD([tp], lr=0.05, momentum=0.8, weight_decay=0.1)),
        "nesterov": (SGD(lr=0.05, momentum=0.8, nesterov=True),
                     torch.optim.SGD([tp], lr=0.05, momentum=0.8, nesterov=True)),
        "adam": (Adam(lr=0.01, weight_decay=0.1),
                 torch.optim.Adam([tp], lr=0.01, weight_decay=0.1)),
        "adamw": (Adam(lr=0.01, weight_decay=0.1, decoupled=True),
                  torch.optim.AdamW([tp], lr=0.01, weight_decay=0.1)),
    }[kind]
    params = {"w": p0.copy()}
    for g in grads:
        ours.step(params, {"w": g})
        tp.grad = torch.tensor(g)
        theirs.step()
    np.testing.assert_allclose(params["w"], tp.detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("opt", [SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1),
                                 SGD(lr=0.1, momentum=0.9, dampening=0.1),
                                 Adam(lr=0.1, weight_decay=0.1),
                                 Adam(lr=0.1, weight_decay=0.1, decoupled=True)])
def test_steps_after_the_first_allocate_nothing(opt):
    params = {"a": np.ones((200, 100)), "b": np.ones(100)}
    grads = {"a": np.full((200, 100), 0.5), "b": np.full(100, 0.25)}
    opt.step(params, grads)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for _ in range(5):
            opt.step(params, grads)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak - before < 100 * 8  # far below one (100,)-array temporary; none of (200, 100)


def test_only_trainable_keys_present_in_grads_and_params_are_updated():
    params = {"a": np.ones(2), "b": np.ones(2), "frozen": np.ones(2)}
    grads = {"a": np.ones(2), "frozen": np.ones(2), "state:h": np.ones(2)}
    SGD(lr=0.5, trainable={"a", "b"}).step(params, grads)
    np.testing.assert_array_equal(params["a"], [0.5, 0.5])
    np.testing.assert_array_equal(params["b"], [1, 1])
    np.testing.assert_array_equal(params["frozen"], [1, 1])
    assert "state:h" not in params


def test_gradient_shape_mismatch_is_one_clear_line():
    with pytest.raises(ValueError, match=r"gradient 'w' has shape \(3,\), parameter has \(1,\)"):
        SGD(lr=0.1).step(one(1.0), {"w": np.ones(3)})


def test_clip_global_norm_scales_to_max_norm():
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([[4.0]])}
    assert clip_global_norm(grads, 1.0) == pytest.approx(5.0)
    assert global_norm(grads) == pytest.approx(1.0)
    np.testing.assert_allclose(grads["a"], [0.6, 0.0])
    np.testing.assert_allclose(grads["b"], [[0.8]])


def test_clip_global_norm_leaves_small_and_nonfinite_gradients():
    grads = {"a": np.array([0.3, 0.4])}
    assert clip_global_norm(grads, 1.0) == pytest.approx(0.5)
    np.testing.assert_array_equal(grads["a"], [0.3, 0.4])
    bad = {"a": np.array([np.inf, 1.0])}
    assert math.isinf(clip_global_norm(bad, 1.0))
    np.testing.assert_array_equal(bad["a"], [np.inf, 1.0])
    with pytest.raises(ValueError, match="max_norm must be > 0"):
        clip_global_norm(grads, 0.0)


@pytest.mark.parametrize("make", [lambda: SGD(lr=0.1, momentum=0.9, nesterov=True),
                                  lambda: Adam(lr=0.05)])
def test_state_dict_round_trip_continues_exactly(make):
    rng = np.random.default_rng(0)
    grads = [{"w": rng.standard_normal(4), "v": rng.standard_normal((2, 2))} for _ in range(6)]
    ref_params = {"w": np.zeros(4), "v": np.ones((2, 2))}
    ref = make()
    for g in grads:
        ref.step(ref_params, g)
    params = {"w": np.zeros(4), "v": np.ones((2, 2))}
    first = make()
    for g in grads[:3]:
        first.step(params, g)
    state = first.state_dict()
    second = make()
    second.load_state_dict(state)
    for g in grads[3:]:
        second.step(params, g)
    for k in params:
        np.testing.assert_array_equal(params[k], ref_params[k])


def test_load_state_dict_keeps_new_hyper_parameters_unless_asked():
    opt = Adam(lr=0.1)
    opt.step(one(1.0), one(1.0))
    state = opt.state_dict()
    fresh = Adam(lr=0.5)
    fresh.load_state_dict(state)
    assert fresh.lr == 0.5 and fresh.t == 1
    fresh.load_state_dict(state, restore_hyper=True)
    assert fresh.lr == 0.1 and fresh.betas == (0.9, 0.999)
    with pytest.raises(ValueError, match="optimizer state is for 'adam', not 'sgd'"):
        SGD(lr=0.1).load_state_dict(state)


def test_make_optimizer_and_bad_hyper_parameters():
    assert isinstance(make_optimizer("sgd", 0.1, momentum=0.9), SGD)
    assert isinstance(make_optimizer("adam", 0.1), Adam)
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'; choose one of sgd, adam"):
        make_optimizer("rmsprop", 0.1)
    with pytest.raises(ValueError, match="optimizer 'adam'.*momentum"):
        make_optimizer("adam", 0.1, momentum=0.9)
    with pytest.raises(ValueError, match="nesterov momentum needs momentum > 0"):
        SGD(lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="learning rate must be >= 0"):
        Adam(lr=-1.0)
