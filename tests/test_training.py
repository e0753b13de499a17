"""The pure training function: deterministic under a seed, and it learns."""

from pathlib import Path

import numpy as np
import pytest

from streaming_lstm.core import training
from streaming_lstm.core.config_load import load_config
from streaming_lstm.core.normalizer import NormStats
from streaming_lstm.core.tf_import import tf
from streaming_lstm.core.weights import LSTMConfig, init_weights

IRIS = Path(__file__).resolve().parents[1] / "conf" / "iris.toml"
CFG = LSTMConfig(timesteps=4, features_per_step=1, hidden=(8,), num_classes=3, seed=1)


def toy(n: int = 90, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n).astype(np.int32)
    x = rng.normal(size=(n, 4)) + 2.0 * y[:, None]
    return x.astype(np.float32), y


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "rmsprop"])
def test_same_seed_same_weights_and_it_learns(optimizer: str) -> None:
    spec = training.TrainSpec(CFG, optimizer, 0.05 if optimizer == "sgd" else 0.01, 5.0, 1e-4)
    x, y = toy()
    xn = NormStats.of(x).transform(x)
    w0 = init_weights(CFG)
    before = training.score(w0, xn, y, spec)
    a, loss_a = training.fit(w0, xn, y, spec, epochs=15, batch_size=10, seed=3)
    b, loss_b = training.fit(w0, xn, y, spec, epochs=15, batch_size=10, seed=3)
    c, _ = training.fit(w0, xn, y, spec, epochs=15, batch_size=10, seed=4)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert loss_a == loss_b
    assert any(not np.array_equal(a[k], c[k]) for k in a)
    after = training.score(a, xn, y, spec)
    assert after.loss < before.loss
    assert after.accuracy > 0.9


def test_train_partition_scores_before_training() -> None:
    spec = training.TrainSpec(CFG, "adam", 0.01, 5.0, 0.0)
    x, y = toy()
    w0 = init_weights(CFG)
    empty = NormStats.empty(4)
    r = training.train_partition(0, w0, empty, x, y, spec, epochs=5, batch_size=10, seed=1)
    # The prequential score is the incoming model's, on the incoming normaliser.
    expected = training.score(w0, empty.transform(x), y, spec)
    assert (r.prequential.correct, r.prequential.loss_sum) == (expected.correct, pytest.approx(expected.loss_sum, rel=1e-6))
    assert r.rows == len(x) and r.norm.count == len(x)
    assert training.score(r.weights, NormStats.of(x).transform(x), y, spec).loss < expected.loss


def test_scoring_in_the_training_steps_scores_each_new_row_before_the_step_that_learns_it() -> None:
    """fit_scored's first epoch meets the new rows first (before the rehearsal's), and its score
    is, row by row, the weights before the step that learned the row, counted over the new rows
    only, checked against score() of the weights after each prefix of steps."""
    spec = training.TrainSpec(CFG, "adam", 0.01, 5.0, 0.0)
    x, y = toy(37)
    xn = NormStats.of(x).transform(x)
    w0, new = init_weights(CFG), 30  # rows 30.. stand for the rehearsal's
    scored, loss, prequential = training.fit_scored(w0, xn, y, spec, new_rows=new, epochs=3, batch_size=8, seed=5)
    order, mask = training.mini_batches(len(x), 3, 8, np.random.default_rng(5), first=new)
    assert sorted(order[mask > 0][:new].tolist()) == list(range(new)), "the new rows open the first epoch"
    model, correct, loss_sum = training.compiled(spec), 0, 0.0
    model.net.assign(w0)
    model.reset_optimizer()
    model.train_steps(8)(xn, y, order, mask)  # the same steps, as fit runs them
    assert all(np.array_equal(model.net.get()[k], scored[k]) for k in scored) and np.isfinite(loss)
    for k in range(len(order) // 3):  # the first epoch: weights after k steps score step k's rows
        model.net.assign(w0)
        model.reset_optimizer()
        model.train_steps(8)(xn, y, order[:k], mask[:k])
        rows = order[k][(mask[k] > 0) & (order[k] < new)]
        got = training.score(model.net.get(), xn[rows], y[rows], spec)
        correct, loss_sum = correct + got.correct, loss_sum + got.loss_sum
    assert (prequential.rows, prequential.correct) == (new, correct)
    assert prequential.loss_sum == pytest.approx(loss_sum, rel=1e-5)
    r = training.train_partition(0, w0, NormStats.empty(4), x[:new], y[:new], spec, epochs=3, batch_size=8, seed=5, score_steps=True)
    assert r.prequential.rows == new and r.prequential != training.score(w0, NormStats.empty(4).transform(x[:new]), y[:new], spec)


def test_short_last_batch_and_other_row_counts_do_not_retrace() -> None:
    """One trace per static mini-batch size (training.padded_size): a short last mini-batch is
    padded, any number of rows >= batch_size reuses the full size, fewer rows a power of two."""
    spec = training.TrainSpec(CFG, "adam", 0.01, 0.0, 0.0)
    x, y = toy(95)
    training.fit(init_weights(CFG), x[:23], y[:23], spec, epochs=1, batch_size=10, seed=0)
    model = training.compiled(spec)
    full = model.train_steps(10)
    before = full.experimental_get_tracing_count()
    for n in (10, 17, 95):
        training.fit(init_weights(CFG), x[:n], y[:n], spec, epochs=2, batch_size=10, seed=0)
    assert full.experimental_get_tracing_count() == before == 1
    assert [training.padded_size(n, 10) for n in (1, 2, 3, 5, 8, 9, 10, 11, 1000)] == [1, 2, 4, 8, 8, 10, 10, 10, 10]
    _, loss = training.fit(init_weights(CFG), x[:3], y[:3], spec, epochs=1, batch_size=10, seed=0)
    assert set(model._train_fns) == {(10, False), (4, False)} and np.isfinite(loss)


def test_tracing_the_kernel_rewrites_no_python_source(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every traced function of the kernel (the training loops, plain and scoring in their steps,
    scoring, prediction, the raw outputs) is built without AutoGraph, whose rewriting of each
    function's source (and of every function it calls) is most of a first trace's time; and the
    graph loop trains what it trained with AutoGraph: the same weights as steps run one by one."""
    from tensorflow.python.autograph.impl import api

    converted: list[object] = []
    convert = api._convert_actual
    monkeypatch.setattr(api, "_convert_actual", lambda entity, options: converted.append(entity) or convert(entity, options))
    cfg = LSTMConfig(timesteps=2, features_per_step=2, hidden=(5, 3), num_classes=3, seed=7)  # this test's own traces
    spec = training.TrainSpec(cfg, "adam", 0.01, 5.0, 1e-4)
    x, y = toy(23, seed=2)
    w0 = init_weights(cfg)
    looped, _ = training.fit(w0, x, y, spec, epochs=1, batch_size=23, seed=0)
    training.fit_scored(w0, x, y, spec, new_rows=23, epochs=1, batch_size=8, seed=0)
    training.score(w0, x, y, spec)
    training.predict(w0, x, spec)
    training.outputs(w0, x, spec)
    assert converted == []
    model = training.compiled(spec)  # one step by hand, eagerly: what the loop's single step must equal
    model.net.assign(w0)
    model.reset_optimizer()
    model._train_step(tf.constant(x), tf.constant(y), tf.ones(23))
    for name, value in model.net.get().items():
        np.testing.assert_allclose(looped[name], value, rtol=1e-5, atol=1e-6)


def test_mini_batches_cover_every_row_once_per_epoch_and_mask_only_padding() -> None:
    for rows, batch in [(23, 10), (20, 10), (3, 10), (1, 1), (7, 3)]:
        order, mask = training.mini_batches(rows, 3, batch, np.random.default_rng(0))
        b = training.padded_size(rows, batch)
        assert order.shape == mask.shape and order.shape[1] == b
        per_epoch = len(order) // 3
        for e in range(3):
            o, m = order[e * per_epoch : (e + 1) * per_epoch], mask[e * per_epoch : (e + 1) * per_epoch]
            assert sorted(o[m == 1].tolist()) == list(range(rows))  # every row once
            assert (o[m == 0] == 0).all() and (m.sum(axis=1)[:-1] == batch).all()  # only the last is short
        # The permutations are the same as before padding existed: one per epoch, in order.
        rng = np.random.default_rng(0)
        assert order[mask == 1].tolist() == np.concatenate([rng.permutation(rows) for _ in range(3)]).tolist()


def test_mini_batches_can_open_the_first_epoch_with_the_first_rows() -> None:
    """first=k: epoch 0 is a permutation of rows [0, k) then one of the rest; later epochs and
    first=0 are the plain permutations."""
    order, mask = training.mini_batches(23, 3, 4, np.random.default_rng(1), first=9)
    met = order[mask == 1].reshape(3, 23)
    assert sorted(met[0, :9].tolist()) == list(range(9)) and sorted(met[0, 9:].tolist()) == list(range(9, 23))
    assert all(sorted(e.tolist()) == list(range(23)) for e in met)
    plain, _ = training.mini_batches(23, 3, 4, np.random.default_rng(1))
    assert training.mini_batches(23, 3, 4, np.random.default_rng(1), first=0)[0].tolist() == plain.tolist()
    assert training.mini_batches(23, 3, 4, np.random.default_rng(1), first=23)[0].tolist() == plain.tolist(), "all new: one permutation"


def test_a_partition_task_with_only_its_model_row_returns_no_rows() -> None:
    """A batch smaller than its keys leaves some tasks only their model row (keying.keyed_rows);
    no frames at all (an unplanned task) gives no rows either; two model rows are refused."""
    from pathlib import Path

    import pandas as pd

    from streaming_lstm.core.config_load import load_config
    from streaming_lstm.core.normalizer import NormStats
    from streaming_lstm.trainer import executor

    cfg = load_config(Path(__file__).resolve().parent.parent / "conf" / "iris.toml")
    spec = training.TrainSpec.from_app(cfg, streaming=True)
    blob = executor.encode_model(init_weights(spec.model), NormStats.empty(spec.model.num_features))
    feats = cfg.data.feature_columns()
    model_row = pd.DataFrame({"key": [None], "_idx": [-1], **{f: [np.nan] for f in feats}, "label": [-1], "_model": [blob]})
    kwargs = {"config_dict": cfg.to_dict(), "batch_id": 0, "threads": 1, "epochs": 1}
    assert list(executor.train_frames(iter([]), **kwargs)) == []
    assert list(executor.train_frames(iter([model_row]), **kwargs)) == []
    data_row = pd.DataFrame({"key": [0], "_idx": [0], **{f: [1.0] for f in feats}, "label": [1], "_model": [None]})
    # Mean aggregation (the default): the key's figures, then its task's fold (results.Fold).
    key_row, fold_row = list(executor.train_frames(iter([model_row, data_row]), **kwargs))
    assert int(key_row["rows"].iloc[0]) == 1 and int(key_row["key"].iloc[0]) == 0 and key_row["weights"].iloc[0] == b""
    assert fold_row["kind"].iloc[0] == "fold" and int(fold_row["key"].iloc[0]) == 0 and int(fold_row["rows"].iloc[0]) == 1
    with pytest.raises(RuntimeError, match="2 model rows"):
        list(executor.train_frames(iter([model_row, model_row, data_row]), **kwargs))


def test_small_mini_batches_train_on_one_intra_op_thread_and_large_ones_on_every_core() -> None:
    """The widest recurrent matmul B x H x 4H decides: split from 2^23 multiply-adds per layer
    (core/threads.py: a stack's layers overlap on the inter-op threads without splitting)."""
    from streaming_lstm.core.threads import intra_op_threads

    def one_layer(hidden: int) -> LSTMConfig:
        return LSTMConfig(timesteps=4, features_per_step=1, hidden=(hidden,), num_classes=3)

    seed_shape = LSTMConfig(timesteps=4, features_per_step=1, hidden=(128, 256), num_classes=3)
    assert [intra_op_threads(seed_shape, b, cores=2) for b in (10, 32, 64, 256)] == [1, 1, 2, 2]
    assert intra_op_threads(seed_shape, 256, cores=1) == 1
    assert [intra_op_threads(one_layer(256), b, cores=2) for b in (16, 32)] == [1, 2]
    assert intra_op_threads(one_layer(64), 256, cores=2) == 1


def test_tasks_side_by_side_take_up_to_twice_their_share_of_the_cores() -> None:
    """threads.task_threads: a task's threads where splitting pays are twice its share of the
    cores, at most all of them (core/threads.py), and one where it does not."""
    from streaming_lstm.core.threads import task_threads

    seed_shape = LSTMConfig(timesteps=4, features_per_step=1, hidden=(128, 256), num_classes=3)
    assert [task_threads(seed_shape, 256, cores=2, tasks=t) for t in (1, 2)] == [2, 2]
    assert [task_threads(seed_shape, 256, cores=8, tasks=t) for t in (1, 2, 8, 16)] == [8, 8, 2, 2]
    assert task_threads(seed_shape, 256, cores=1, tasks=1) == 1
    assert [task_threads(seed_shape, b, cores=2, tasks=2) for b in (10, 32)] == [1, 1]


def test_tensorflow_comes_without_keras_until_keras_is_asked_for() -> None:
    """core/tf_import.py: the package's TensorFlow import leaves Keras out (a quarter of the
    import's time); the model trains without it, and ``tf.keras`` still loads it on first use."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from streaming_lstm.core import training\n"
        "from streaming_lstm.core.weights import LSTMConfig, init_weights\n"
        "import numpy as np\n"
        "keras = sorted(m for m in sys.modules if m == 'keras' or m.startswith('keras.'))\n"
        "assert not keras, keras[:5]\n"
        "spec = training.TrainSpec(LSTMConfig(2, 2, (8,), 3), 'adam', 0.01, 0.0, 0.0)\n"
        "x, y = np.ones((6, 4), np.float32), np.arange(6, dtype=np.int32) % 3\n"
        "w, loss = training.fit(init_weights(spec.model), x, y, spec, epochs=2, batch_size=4, seed=0)\n"
        "assert np.isfinite(loss) and 'keras.src' not in sys.modules\n"
        "from streaming_lstm.core.tf_import import tf\n"
        "print(tf.keras.layers.LSTM(3)(tf.zeros((1, 2, 1))).shape, tf.keras.optimizers.Adam.__module__)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["(1,", "3)", "keras.src.optimizers.adam"], done.stdout


def test_mini_batches_laid_in_a_wider_trace_keep_their_rows_and_mask_the_rest() -> None:
    """width > the mini-batch: the same rows in the same steps, the extra columns masked."""
    plain = training.mini_batches(25, 2, 4, np.random.default_rng(7), first=5)
    wide = training.mini_batches(25, 2, 4, np.random.default_rng(7), first=5, width=16)
    assert plain[0].shape == (14, 4) and wide[0].shape == (14, 16)
    np.testing.assert_array_equal(wide[0][:, :4], plain[0])
    np.testing.assert_array_equal(wide[1][:, :4], plain[1])
    assert not wide[1][:, 4:].any() and wide[1].sum() == 50 == plain[1].sum()
    small = training.mini_batches(3, 1, 2, np.random.default_rng(7), width=training.padded_size(3, 16))
    assert small[0].shape == (2, 4) and small[1].sum() == 3, "fewer rows than the width: padded to their power of two"


@pytest.mark.parametrize("scored", [False, True])
def test_a_schedule_of_mini_batch_sizes_trains_in_one_trace_and_as_each_size_alone(scored: bool) -> None:
    """trace_size: mini-batches of 2, 4 and 8 rows run in the 16-row trace (one traced loop per
    process, not one per size) and train what each size's own trace trains."""
    spec = training.TrainSpec(CFG, "adam", 0.0123, 5.0, 1e-4)  # a spec of its own: a fresh cache entry
    x, y = toy(40, seed=2)
    xn, w0 = NormStats.of(x).transform(x), init_weights(CFG)
    model = training.compiled(spec)
    for size in (2, 4, 8):
        if scored:
            wide, loss, s_wide = training.fit_scored(w0, xn, y, spec, new_rows=30, epochs=2, batch_size=size, seed=1, trace_size=16)
        else:
            wide, loss = training.fit(w0, xn, y, spec, epochs=2, batch_size=size, seed=1, trace_size=16)
        assert {k for k in model._train_fns if k[1] == scored} == {(16, scored)}, "every size ran in the 16-row trace"
        if scored:
            alone, loss_alone, s_alone = training.fit_scored(w0, xn, y, spec, new_rows=30, epochs=2, batch_size=size, seed=1)
            assert (s_wide.rows, s_wide.correct) == (s_alone.rows, s_alone.correct) and s_wide.loss_sum == pytest.approx(s_alone.loss_sum, rel=1e-5)
        else:
            alone, loss_alone = training.fit(w0, xn, y, spec, epochs=2, batch_size=size, seed=1)
        assert (size, scored) in model._train_fns
        del model._train_fns[size, scored]
        assert loss == pytest.approx(loss_alone, rel=1e-5)
        for k in wide:
            np.testing.assert_allclose(wide[k], alone[k], atol=1e-6, err_msg=f"{k} at mini-batch {size}")


def test_xla_steps_train_what_the_graph_steps_train_and_replay_exactly() -> None:
    """train.xla compiles each step with XLA: the same arithmetic, fused, so the weights, the loss
    and the in-step scores agree with the graph's to float rounding, and a replay is exact."""
    x, y = toy(45, seed=3)
    xn, w0 = NormStats.of(x).transform(x), init_weights(CFG)
    graph = training.TrainSpec(CFG, "adam", 0.0111, 5.0, 1e-4)  # a spec of its own: a fresh cache entry
    xla = training.TrainSpec(CFG, "adam", 0.0111, 5.0, 1e-4, xla=True)
    options = {"new_rows": 40, "epochs": 3, "batch_size": 10, "seed": 2}
    want, want_loss, want_score = training.fit_scored(w0, xn, y, graph, **options)
    got, loss, score = training.fit_scored(w0, xn, y, xla, **options)
    again, _, _ = training.fit_scored(w0, xn, y, xla, **options)
    assert training.compiled(xla)._step is not training.compiled(graph)._step
    assert loss == pytest.approx(want_loss, rel=1e-5) and (score.rows, score.correct) == (want_score.rows, want_score.correct)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], atol=1e-5, err_msg=k)
        np.testing.assert_array_equal(again[k], got[k], err_msg=k)
    assert training.TrainSpec.from_app(load_config(IRIS, {"train.xla": "true"})).xla


def test_threads_training_side_by_side_in_their_own_model_slots_match_one_at_a_time() -> None:
    """The driver trains its task groups in threads (executor.group_rows), each with its own copy
    of the compiled model (compiled.model_slot): the weights live in that copy's variables, so
    two fits running at once must give what each gives alone."""
    from concurrent.futures import ThreadPoolExecutor

    from streaming_lstm.core.compiled import compiled, model_slot

    spec = training.TrainSpec(CFG, "adam", 0.01, 5.0, 1e-4)
    data = [toy(60, seed=s) for s in (1, 2)]
    w0 = init_weights(CFG)
    alone = [training.fit(w0, x, y, spec, epochs=20, batch_size=10, seed=i)[0] for i, (x, y) in enumerate(data)]

    def fit_in(slot: int) -> dict[str, np.ndarray]:
        with model_slot(slot):
            x, y = data[slot]
            return training.fit(w0, x, y, spec, epochs=20, batch_size=10, seed=slot)[0]

    for _ in range(3):  # the threads interleave differently each time
        with ThreadPoolExecutor(2) as pool:
            together = list(pool.map(fit_in, [0, 1]))
        for a, b in zip(alone, together, strict=True):
            for k in a:
                np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    with model_slot(1):
        one = compiled(spec)
    assert one is not compiled(spec), "slot 1's copy is not slot 0's"
