"""Helpers of tests/keras2/test_keras_models_*.py: deterministic weights, inputs, and the check
that a Keras model's predictions on kcomp match an independent numpy forward pass at batch sizes
1 and 7."""
from __future__ import annotations

import numpy as np

BATCHES = (1, 7)   # a single sample and an odd batch
RTOL, ATOL = 2e-4, 2e-5


def randomize(model, seed=0, scale=0.5):
    """Give every weight deterministic uniform values in [-scale, scale]; returns them (float64).
    Non-trainable statistics (moving variances) that must stay positive get [0.5, 1.5]."""
    rng = np.random.RandomState(seed)
    values = []
    for w, current in zip(model.weights, model.get_weights()):
        shape = current.shape
        if "moving_variance" in w.name:
            v = rng.uniform(0.5, 1.5, shape)
        else:
            v = rng.uniform(-scale, scale, shape)
        values.append(v)
    model.set_weights([v.astype("float32") for v in values])
    return [v.astype("float32").astype("float64") for v in model.get_weights()]


def data(shape, seed, lo=-1.0, hi=1.0):
    return np.random.RandomState(seed).uniform(lo, hi, shape).astype("float32")


def close(got, want, rtol=RTOL, atol=ATOL, what=""):
    got = np.asarray(got)
    want = np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=what)


def check_model(model, make_inputs, reference, batches=BATCHES, rtol=RTOL, atol=ATOL):
    """For each batch size: inputs = make_inputs(batch) (an array or a list), compare
    model.predict(inputs) with reference(inputs) (an array or a list of arrays)."""
    for batch in batches:
        inputs = make_inputs(batch)
        got = model.predict(inputs, batch_size=batch)
        want = reference(inputs)
        if isinstance(want, (list, tuple)):
            assert isinstance(got, list) and len(got) == len(want), \
                f"batch {batch}: {len(want)} outputs expected"
            for i, (g, w) in enumerate(zip(got, want)):
                close(g, w, rtol, atol, f"batch {batch}, output {i}")
        else:
            close(got, want, rtol, atol, f"batch {batch}")
