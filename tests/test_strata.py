"""Stratified multi-thread training (_sgd.stratified_examples and run_epoch's candidate blocks).

With several threads on a model small enough to stay in cache, fit cuts the items into one group
per thread and trains in rounds in which no two threads touch the same user or item row.
"""

import copy

import numpy as np
import pytest
import scipy.sparse as sp

from fastrank import FastRank, _sgd

from test_estimator import captured_epochs, random_interactions


def layout(n_users=300, n_items=200, n_examples=5000, n_threads=2, chunk_items=4, part_examples=2048,
           seed=0, skew=1.2, with_values=True):
    """Examples sorted by user (as fit holds them), a user order, and their stratified layout."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1) ** skew
    items = rng.choice(n_items, n_examples, p=popularity / popularity.sum()).astype(np.int32)
    users = np.sort(rng.integers(0, n_users, n_examples)).astype(np.int32)
    user_starts = np.searchsorted(users, np.arange(n_users + 1)).astype(np.int64)
    user_order = rng.permutation(n_users).astype(np.int32)
    labels = rng.standard_normal(n_examples).astype(np.float32) if with_values else None
    weights = rng.random(n_examples).astype(np.float32) if with_values else None
    examples = (users, items, labels, weights, user_starts, user_order)
    return examples, _sgd.stratified_examples(seed, user_starts, items, labels, weights, user_order, n_threads,
                                              n_items, chunk_items, part_examples)


def thread_of_users(user_starts, user_order, n_threads):
    """Reference for the cut between threads: thread t starts at the first user, in user_order,
    whose examples start at or after t / n_threads of them."""
    counts = np.diff(user_starts)[user_order]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    n = user_starts[-1]
    owner = np.empty(user_order.shape[0], dtype=np.int64)
    owner[user_order] = np.searchsorted([n * t // n_threads for t in range(1, n_threads)], starts, side="right")
    return owner


def cells_of(out, n_threads):
    """{(thread, round): the positions of that cell's blocks, part by part}."""
    block_ranges, rounds = out[4], out[7]
    cells = {}
    for block in range(block_ranges.shape[0]):
        thread, round_ = block % n_threads, (block // n_threads) % n_threads
        cells.setdefault((thread, round_), []).append(np.arange(*block_ranges[block]))
    assert rounds * n_threads == block_ranges.shape[0]
    return cells


@pytest.mark.parametrize("n_threads", [2, 3, 5])
def test_layout_is_a_permutation_into_disjoint_cells(n_threads):
    (users, items, labels, weights, user_starts, user_order), out = layout(n_threads=n_threads, part_examples=300)
    out_users, out_items, out_labels, out_weights, block_ranges, candidates, block_candidates, rounds, groups, *_ = out
    # the same examples, each with its own label and weight
    before = sorted(zip(users.tolist(), items.tolist(), labels.tolist(), weights.tolist()))
    after = sorted(zip(out_users.tolist(), out_items.tolist(), out_labels.tolist(), out_weights.tolist()))
    assert before == after
    # the blocks tile the examples
    n_blocks = block_ranges.shape[0]
    assert rounds * n_threads == n_blocks
    np.testing.assert_array_equal(np.sort(np.concatenate([np.arange(*r) for r in block_ranges])),
                                  np.arange(users.shape[0]))
    np.testing.assert_array_equal(np.sort(candidates), np.arange(200))
    owner = thread_of_users(user_starts, user_order, n_threads)
    for round_ in range(rounds):
        groups_in_round = []
        for thread in range(n_threads):
            block = round_ * n_threads + thread
            start, stop = block_candidates[block]
            group = set(candidates[start:stop].tolist())
            assert groups[block] == (thread + round_) % n_threads
            groups_in_round.append(group)
            block_items = out_items[block_ranges[block, 0]:block_ranges[block, 1]]
            block_users = out_users[block_ranges[block, 0]:block_ranges[block, 1]]
            # every example's item is among the block's candidates, and its user is the thread's
            assert set(block_items.tolist()) <= group
            assert np.all(owner[block_users] == thread)
        # the threads of a round have disjoint groups that together hold every item
        assert sum(len(group) for group in groups_in_round) == 200
        assert set().union(*groups_in_round) == set(range(200))


def test_threads_own_whole_users_and_about_equal_shares():
    """No user's examples go to two threads, and each thread's share differs from an equal cut by
    less than one user's examples."""
    n_threads = 3
    (users, _, _, _, user_starts, user_order), out = layout(n_threads=n_threads)
    cells = cells_of(out, n_threads)
    thread_users = [np.concatenate([out[0][np.concatenate(cells[(thread, round_)])]
                                    for round_ in range(n_threads)]) for thread in range(n_threads)]
    assert sum(len(set(u.tolist())) for u in thread_users) == len(set(users.tolist()))
    n, most = users.shape[0], np.diff(user_starts).max()
    for thread in range(n_threads):
        assert abs(thread_users[thread].shape[0] - n // n_threads) < most + 1


def test_cells_are_shuffled_and_cut_in_equal_parts():
    (users, items, _, _, user_starts, user_order), out = layout(with_values=False, part_examples=400)
    out_users, out_items, out_labels, out_weights, block_ranges, candidates, block_candidates, rounds, groups, *_ = out
    assert out_labels is None and out_weights is None
    n_threads = 2
    assert rounds // n_threads > 1
    group_of = np.empty(200, dtype=np.int64)
    for block in range(n_threads):
        start, stop = block_candidates[block]
        group_of[candidates[start:stop]] = groups[block]
    owner = thread_of_users(user_starts, user_order, n_threads)
    _, again = layout(with_values=False, part_examples=400)
    # the same examples and user order under another seed: other groups, and other orders
    other_seed = _sgd.stratified_examples(1, user_starts, items, None, None, user_order, 2, 200, 4, 400)
    for (thread, round_), parts in cells_of(out, n_threads).items():
        sizes = [part.shape[0] for part in parts]
        assert max(sizes) - min(sizes) <= 1
        cell = np.concatenate(parts)
        # one contiguous stretch of memory
        np.testing.assert_array_equal(cell, np.arange(cell[0], cell[0] + cell.shape[0]))
        # the cell holds exactly the thread's examples of the group's items
        expected = (owner[users] == thread) & (group_of[items] == (thread + round_) % n_threads)
        assert sorted(zip(out_users[cell].tolist(), out_items[cell].tolist())) == sorted(
            zip(users[expected].tolist(), items[expected].tolist()))
        # in a random order: not user by user, the same for the same seed
        assert np.count_nonzero(np.diff(out_users[cell]) != 0) > cell.shape[0] // 2
        np.testing.assert_array_equal(again[0][cell], out_users[cell])
    assert not np.array_equal(other_seed[0], out_users)
    assert sorted(zip(other_seed[0].tolist(), other_seed[1].tolist())) == sorted(zip(users.tolist(), items.tolist()))


def test_groups_are_runs_of_consecutive_items_balanced_by_examples():
    chunk = 8
    (_, items, _, _, _, _), out = layout(n_items=400, n_examples=40000, chunk_items=chunk, skew=1.0, seed=3)
    candidates, block_candidates = out[5], out[6]
    group_of = np.empty(400, dtype=np.int64)
    for block in range(2):
        start, stop = block_candidates[block]
        group_of[candidates[start:stop]] = block
    # whole runs of chunk_items consecutive ids in one group
    assert np.all(group_of.reshape(-1, chunk) == group_of[::chunk, None])
    loads = np.bincount(group_of[items], minlength=2)
    assert loads.min() > 0.9 * loads.max()


@pytest.mark.parametrize("seed", range(6))
def test_rounds_are_even_even_with_a_heavy_run_of_items(seed):
    """Zipf popularity over 400 items in runs of 8: the first run holds 41% of the examples. In
    every round the two threads get about as many examples (a heavy run drawn late in the
    greedy grouping is moved by the second pass)."""
    _, out = layout(n_items=400, n_examples=40000, chunk_items=8, skew=1.0, seed=seed)
    block_ranges, rounds = out[4], out[7]
    sizes = (block_ranges[:, 1] - block_ranges[:, 0]).reshape(rounds, 2)
    assert np.all(sizes.min(axis=1) >= 0.95 * sizes.max(axis=1))


def test_groups_change_with_the_seed():
    groupings = set()
    (users, items, labels, weights, user_starts, user_order), _ = layout(seed=0)
    for seed in range(6):
        _, _, _, _, _, candidates, block_candidates, *_ = _sgd.stratified_examples(
            seed, user_starts, items, labels, weights, user_order, 2, 200, 4)
        start, stop = block_candidates[0]
        groupings.add(frozenset(candidates[start:stop].tolist()))
    assert len(groupings) > 1


def test_layout_rejects_bad_input():
    (users, items, labels, weights, starts, order), _ = layout()

    def call(**changes):
        arguments = dict(seed=0, user_starts=starts, items=items, labels=labels, weights=weights, user_order=order,
                         n_strata=2, n_items=200, chunk_items=4)
        arguments.update(changes)
        return _sgd.stratified_examples(**arguments)

    call()  # accepted
    bad_starts = starts.copy()
    bad_starts[5], bad_starts[6] = bad_starts[6], bad_starts[5] - 1
    bad_order = order.copy()
    bad_order[0] = bad_order[1]
    bad_cases = [
        (dict(n_strata=1), "at least 2 strata"),
        (dict(num_threads=-1), "num_threads"),
        (dict(chunk_items=0), "chunk_items"),
        (dict(part_examples=0), "part_examples"),
        (dict(chunk_items=200), "fewer groups"),
        (dict(n_items=100), "item ids"),
        (dict(items=np.full_like(items, -1)), "item ids"),
        (dict(labels=labels[:-1]), "same length"),
        (dict(user_order=order[:-1]), "one entry more"),
        (dict(user_starts=bad_starts), "user_starts must rise"),
        (dict(user_order=bad_order), "permutation"),
        (dict(user_order=np.where(order == 0, 300, order).astype(np.int32)), "permutation"),
    ]
    for changes, message in bad_cases:
        with pytest.raises(ValueError, match=message):
            call(**changes)


@pytest.mark.parametrize("n_strata", [2, 3])
def test_layout_does_not_depend_on_its_threads(n_strata):
    """fit lays out one stratum more than it has threads, on its threads: the layout is a function
    of the seed and the strata alone."""
    (_, items, labels, weights, user_starts, user_order), _ = layout(n_threads=n_strata)
    outs = [_sgd.stratified_examples(4, user_starts, items, labels, weights, user_order, n_strata, 200, 4,
                                     group_positives=True, num_threads=num_threads) for num_threads in (0, 1, 2, 4)]
    for out in outs[1:]:
        for index, value in enumerate(out):
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(value, outs[0][index])
            else:
                assert value == outs[0][index]


def test_empty_layout():
    empty = np.zeros(0, dtype=np.int32)
    out = _sgd.stratified_examples(0, np.zeros(4, dtype=np.int64), empty, None, None,
                                   np.arange(3, dtype=np.int32), 2, 40, 4)
    assert out[0].shape == (0,) and np.all(out[4] == 0) and out[7] >= 2
    np.testing.assert_array_equal(np.sort(out[5]), np.arange(40))
    # no group is left without items, even with no examples to balance
    assert np.all(out[6][:, 1] > out[6][:, 0])


def strata_model(loss="warp", no_components=64, **params):
    return FastRank(no_components=no_components, loss=loss, learning_rate=0.05, random_state=0, **params)


def strata_interactions(negatives=False):
    # 400 x 160 at 15%: about 9,600 examples, a part's worth (2,048) per cell at 2 threads
    return random_interactions(n_users=400, n_items=160, density=0.15, negatives=negatives)


needs_openmp = pytest.mark.skipif(not _sgd.openmp_enabled(), reason="several threads need OpenMP")


@needs_openmp
@pytest.mark.parametrize("loss", ["warp", "bpr", "logistic", "warp-kos"])
def test_fit_trains_in_strata_on_several_threads(monkeypatch, loss):
    calls = captured_epochs(monkeypatch)
    interactions = strata_interactions(negatives=loss == "logistic")
    strata_model(loss).fit(interactions, epochs=2, num_threads=2)
    assert len(calls) == 2 and all(call["candidate_items"] is not None for call in calls)
    assert all(call["rounds"] >= 2 for call in calls)
    assert all("block_bounds" not in call and call["block_ranges"].shape[1] == 2 for call in calls)
    assert all((call.get("group_positive_starts") is not None) == (loss == "warp-kos") for call in calls)
    calls.clear()
    strata_model(loss).fit(interactions, epochs=1, num_threads=1)
    assert "candidate_items" not in calls[0]


@needs_openmp
@pytest.mark.parametrize("loss", ["warp", "warp-kos", "bpr", "logistic"])
def test_only_warp_losses_cut_cells_into_parts(monkeypatch, loss):
    """WARP and WARP-kOS train one stratum more than threads and lose precision when a user meets
    one group for long, so their cells are cut into parts (of STRATUM_PART_EXAMPLES * 2 / n_strata
    examples: as many per user of a run as with 2 strata); logistic and BPR train one stratum per
    thread, in whole cells."""
    calls = captured_epochs(monkeypatch)
    interactions = random_interactions(n_users=1000, n_items=200, density=0.2, negatives=loss == "logistic")
    strata_model(loss).fit(interactions, epochs=1, num_threads=2)
    if loss.startswith("warp"):
        # 2 threads train 3 strata (3 user runs x 3 item groups), in parts of
        # STRATUM_PART_EXAMPLES * 2 / 3 examples (user runs a third of the users, not a half)
        assert calls[0]["block_ranges"].shape[0] == calls[0]["rounds"] * 3
        cells_of_examples = calls[0]["example_users"].shape[0] / 9
        assert abs(calls[0]["rounds"] / 3 - cells_of_examples / (_sgd.STRATUM_PART_EXAMPLES * 2 // 3)) < 1
        assert calls[0]["rounds"] >= 9
    else:
        # one stratum per thread, whole cells: 2 rounds of 2 blocks
        assert calls[0]["rounds"] == 2 and calls[0]["block_ranges"].shape[0] == 4


@pytest.mark.parametrize("case", ["pos2neg2", "item features", "large model", "few items", "few examples"])
def test_fit_keeps_hogwild_where_strata_do_not_apply(monkeypatch, case):
    calls = captured_epochs(monkeypatch)
    interactions = strata_interactions()
    kwargs = {}
    model = strata_model()
    if case == "pos2neg2":
        model = strata_model("bpr", debias="pos2neg2")
    elif case == "item features":
        kwargs["item_features"] = sp.random(160, 30, density=0.2, format="csr", random_state=0, dtype=np.float32)
    elif case == "large model":
        monkeypatch.setattr(_sgd, "small_enough_for_strata", lambda *arrays: False)
    elif case == "few items":
        model = strata_model(no_components=4)  # 256 items per page-sized chunk: fewer than 2 per group
    elif case == "few examples":
        interactions = random_interactions(n_users=120, n_items=160, density=0.1)  # ~2,000 < 2,048 * 2**2
    model.fit(interactions, epochs=1, num_threads=2, **kwargs)
    assert "candidate_items" not in calls[0]


def test_strata_threshold_hook():
    previous = _sgd.set_strata_threshold(0)
    try:
        arrays = (np.zeros((10, 4), dtype=np.float32), None, None, None, None, None)
        assert not _sgd.small_enough_for_strata(arrays, arrays)
        _sgd.set_strata_threshold(-1)
        assert _sgd.small_enough_for_strata(arrays, arrays)
        assert _sgd.set_strata_threshold(5) == _sgd.DEFAULT_STRATA_UP_TO_BYTES
        assert not _sgd.small_enough_for_strata(arrays, arrays)
    finally:
        _sgd.set_strata_threshold(previous)


@pytest.mark.parametrize("loss", ["warp", "bpr", "logistic", "warp-kos"])
def test_strata_are_reproducible_on_several_threads(loss):
    """No row is written by two threads at once, so a seed gives one result whatever the timing."""
    interactions = strata_interactions(negatives=loss == "logistic")
    first = strata_model(loss).fit(interactions, epochs=3, num_threads=2)
    second = strata_model(loss).fit(interactions, epochs=3, num_threads=2)
    np.testing.assert_array_equal(first.item_embeddings, second.item_embeddings)
    np.testing.assert_array_equal(first.user_embeddings, second.user_embeddings)
    np.testing.assert_array_equal(first.item_biases, second.item_biases)


def test_negatives_come_from_the_blocks_candidates(monkeypatch):
    """BPR through run_epoch with every block drawing from one group: item rows outside that group
    move only as positives."""
    interactions = strata_interactions().tocsr()
    model = strata_model("bpr", no_components=8).fit(interactions, epochs=0)
    calls = captured_epochs(monkeypatch, run=False)
    model.fit_partial(interactions, epochs=1, num_threads=1)
    monkeypatch.undo()
    arguments = calls[0]
    users, items = arguments["example_users"], arguments["example_items"]
    group = np.arange(0, 160, 2, dtype=np.int32)
    # only the examples whose positive is in the group, so nothing outside it may move
    keep = np.isin(items, group)
    arguments.update(example_users=np.ascontiguousarray(users[keep]), example_items=np.ascontiguousarray(items[keep]),
                     example_labels=None, example_weights=None,
                     block_bounds=np.array([0, keep.sum() // 2, keep.sum()], dtype=np.int64),
                     candidate_items=group, block_candidates=np.array([[0, 80], [0, 80]], dtype=np.int64), rounds=2)
    before = model.item_embeddings.copy()
    _sgd.run_epoch(**arguments)
    moved = np.flatnonzero(np.any(model.item_embeddings != before, axis=1))
    assert moved.size > 10 and set(moved.tolist()) <= set(group.tolist())


def unsorted_within_a_group(starts, grouped):
    """``grouped`` with the first two positives of the first (user, group) slice that has two swapped."""
    at = next(i for i in range(starts.shape[0] - 1) if starts[i + 1] - starts[i] >= 2)
    swapped = grouped.copy()
    swapped[starts[at]], swapped[starts[at] + 1] = grouped[starts[at] + 1], grouped[starts[at]]
    return swapped


def test_run_epoch_rejects_bad_candidate_blocks(monkeypatch):
    calls = captured_epochs(monkeypatch)
    interactions = strata_interactions()
    model = strata_model("bpr", no_components=8).fit(interactions, epochs=1)
    monkeypatch.undo()
    arguments = dict(calls[0])
    n = arguments["example_users"].shape[0]
    arguments["block_bounds"] = np.array([0, n // 2, n], dtype=np.int64)
    good = dict(candidate_items=np.arange(160, dtype=np.int32),
                block_candidates=np.array([[0, 80], [80, 160]], dtype=np.int64), rounds=1)
    _sgd.run_epoch(**arguments, **good)  # accepted
    bad_cases = [
        (dict(good, rounds=3), "rounds"),
        (dict(good, rounds=0), "rounds"),
        (dict(good, block_candidates=np.array([[0, 80]], dtype=np.int64)), "shape"),
        (dict(good, block_candidates=np.array([[0, 0], [80, 160]], dtype=np.int64)), "no valid range"),
        (dict(good, block_candidates=np.array([[0, 80], [80, 161]], dtype=np.int64)), "no valid range"),
        (dict(good, candidate_items=np.full(160, 160, dtype=np.int32)), "item ids"),
        (dict(good, candidate_items=None), "go together"),
    ]
    for bad, message in bad_cases:
        with pytest.raises(ValueError, match=message):
            _sgd.run_epoch(**arguments, **bad)
    with pytest.raises(ValueError, match="pos2neg2"):
        _sgd.run_epoch(**{**arguments, "debias": _sgd.DEBIAS["pos2neg2"]}, **good)
    kos = {**arguments, "loss": _sgd.WARP_KOS}
    with pytest.raises(ValueError, match="needs block_groups"):
        _sgd.run_epoch(**kos, **good)
    n_users = arguments["positive_indptr"].shape[0] - 1
    starts, grouped = grouped_by_reference(arguments["positive_indptr"], arguments["positive_indices"],
                                           np.repeat([0, 1], 80))
    grouped_arguments = dict(good, block_groups=np.array([0, 1], dtype=np.int32), group_positive_starts=starts,
                             group_positive_indices=grouped)
    _sgd.run_epoch(**kos, **grouped_arguments)  # accepted
    bad_kos = [
        (dict(grouped_arguments, block_groups=np.array([0], dtype=np.int32)), "block_groups must have"),
        (dict(grouped_arguments, block_groups=np.array([0, 2], dtype=np.int32)), r"block_groups must be in"),
        (dict(grouped_arguments, group_positive_starts=starts[:-1]), "offsets per user"),
        (dict(grouped_arguments, group_positive_starts=starts[::-1].copy()), "rise"),
        (dict(grouped_arguments, group_positive_indices=np.full_like(grouped, 999)), "item ids"),
        (dict(grouped_arguments, group_positive_indices=unsorted_within_a_group(starts, grouped)), "sorted"),
    ]
    for bad, message in bad_kos:
        with pytest.raises(ValueError, match=message):
            _sgd.run_epoch(**kos, **bad)
    assert starts.shape == (n_users * 3,)
    del model


def test_run_epoch_block_ranges(monkeypatch):
    """Blocks given as ranges train exactly as the same blocks given as bounds; bad ranges are
    refused before the kernel runs."""
    calls = captured_epochs(monkeypatch)
    interactions = strata_interactions()
    model = strata_model("bpr", no_components=8).fit(interactions, epochs=1)
    monkeypatch.undo()
    arguments = dict(calls[0])
    arguments.pop("block_bounds", None)
    n = arguments["example_users"].shape[0]
    results = []
    for blocks in (dict(block_bounds=np.array([0, n // 3, n], dtype=np.int64)),
                   dict(block_ranges=np.array([[0, n // 3], [n // 3, n]], dtype=np.int64)),
                   dict(block_ranges=np.array([[n // 3, n], [0, n // 3]], dtype=np.int64))):
        start = copy.deepcopy(model)
        _sgd.run_epoch(**dict(arguments, user_parameters=start._side_parameters("user"),
                              item_parameters=start._side_parameters("item"), num_threads=1), **blocks)
        results.append(start.item_embeddings)
    np.testing.assert_array_equal(results[0], results[1])
    assert not np.array_equal(results[0], results[2])  # the other order of the same blocks
    bad_cases = [
        (dict(block_ranges=np.array([[0, n]], dtype=np.int64), block_bounds=np.array([0, n], dtype=np.int64)),
         "not both"),
        (dict(block_ranges=np.zeros((0, 2), dtype=np.int64)), "block_ranges"),
        (dict(block_ranges=np.array([[0, n, n]], dtype=np.int64)), "block_ranges"),
        (dict(block_ranges=np.array([[0, n + 1]], dtype=np.int64)), "block_ranges"),
        (dict(block_ranges=np.array([[-1, n]], dtype=np.int64)), "block_ranges"),
        (dict(block_ranges=np.array([[5, 4]], dtype=np.int64)), "block_ranges"),
    ]
    for blocks, message in bad_cases:
        with pytest.raises(ValueError, match=message):
            _sgd.run_epoch(**arguments, **blocks)


def test_chunks_fill_whole_cache_lines_and_at_most_a_page():
    for no_components in range(1, 131):
        page = _sgd.stratum_chunk_items(no_components)
        # a page of rows (at least one line of 16 biases): the chunk without a group size to cap it
        assert page == max(16, _sgd.STRATUM_CHUNK_BYTES // (4 * no_components) // 16 * 16)
        line_rows = 16 // np.gcd(no_components, 16)
        for n_items, n_strata in [(600, 3), (1682, 2), (1682, 3), (100, 5), (10**6, 3), (7, 2)]:
            chunk = _sgd.stratum_chunk_items(no_components, n_items, n_strata)
            # whole cache lines of embedding rows, so that no line is written by two groups
            assert chunk * 4 * no_components % 64 == 0
            assert chunk % line_rows == 0 and line_rows <= chunk <= page
            # at most 1 / STRATUM_CHUNK_SHARE of a group's items, unless one line of rows is more
            most = n_items // (n_strata * _sgd.STRATUM_CHUNK_SHARE)
            assert chunk <= max(line_rows, most)
            if most >= page:
                assert chunk == page
    assert _sgd.stratum_chunk_items(64, 600, 3) == 4  # the 600-item example of STRATUM_CHUNK_SHARE


def popular_first(n_users, n_items, n_pairs, seed):
    """Power-law interactions whose item ids are popularity ranks (id 0 the most popular), as
    ids given by frequency rank are; (train, test) CSR, a random 20% of the pairs held out."""
    rng = np.random.default_rng(seed)
    item_p = 1.0 / np.arange(1, n_items + 1) ** 0.8
    user_p = 1.0 / np.arange(1, n_users + 1) ** 0.5
    users = rng.choice(n_users, 3 * n_pairs, p=user_p / user_p.sum())
    items = rng.choice(n_items, 3 * n_pairs, p=item_p / item_p.sum())
    codes = rng.permutation(np.unique(users.astype(np.int64) * n_items + items))[:n_pairs]
    held_out = rng.random(codes.size) < 0.2

    def matrix(part):
        return sp.csr_matrix((np.ones(part.size, np.float32), (part // n_items, part % n_items)),
                             shape=(n_users, n_items))

    return matrix(codes[~held_out]), matrix(codes[held_out])


@needs_openmp
def test_strata_keep_accuracy_when_item_ids_follow_popularity(monkeypatch):
    """A positive's negatives come from its own group, which always holds its chunk of
    consecutive ids; with ids by popularity a chunk's items are alike, and with page-sized
    chunks (32 items at 32 components: 3 groups of about 3 chunks here) WARP at 2 threads
    reached p@10 0.12-0.14 against 0.19 on one thread. Chunks capped at a 50th of a group
    train as one thread does."""
    from fastrank.evaluation import precision_at_k

    calls = captured_epochs(monkeypatch)
    train, test = popular_first(1000, 300, 60_000, seed=0)

    def precision(num_threads):
        model = FastRank(no_components=32, learning_rate=0.05, loss="warp", random_state=0)
        model.fit(train, epochs=5, num_threads=num_threads)
        return precision_at_k(model, test, train_interactions=train, k=10).mean()

    one_thread = precision(1)
    calls.clear()
    two_threads = precision(2)
    assert all(call.get("candidate_items") is not None for call in calls)  # trained in strata
    assert one_thread > 0.15
    assert two_threads > one_thread - 0.01


def test_strata_accuracy_matches_one_thread(movielens_split):
    """MovieLens 100K, 2 threads in strata against 1 thread: the same precision and AUC (the
    default thresholds of test_accuracy hold for both; here they must also agree closely)."""
    from test_accuracy import precision_and_auc

    train, test = movielens_split
    results = {}
    for num_threads in (1, 2):
        model = FastRank(no_components=64, learning_rate=0.05, loss="warp", random_state=0)
        model.fit(train, epochs=6, num_threads=num_threads)
        results[num_threads] = precision_and_auc(model, train, test, num_threads)
    (p1, auc1), (p2, auc2) = results[1], results[2]
    assert abs(p2 - p1) < 0.01 and abs(auc2 - auc1) < 0.005


def grouped_by_reference(indptr, indices, group_of_items):
    """Each user's items, group by group (in CSR order within a group), and where each starts."""
    n_groups = int(group_of_items.max()) + 1
    starts, grouped = [], []
    for user in range(indptr.shape[0] - 1):
        row = indices[indptr[user]:indptr[user + 1]]
        for group in range(n_groups):
            starts.append(indptr[user] + sum(np.count_nonzero(group_of_items[row] == g) for g in range(group)))
            grouped.extend(row[group_of_items[row] == group].tolist())
        starts.append(indptr[user + 1])
    return np.array(starts, dtype=np.int32), np.array(grouped, dtype=np.int32)


@pytest.mark.parametrize("n_threads", [2, 3])
def test_layout_groups_each_users_positives(n_threads):
    """group_positives=True: each user's examples sorted by group, as run_epoch's k-OS reads them."""
    (users, items, _, _, user_starts, user_order), _ = layout(n_threads=n_threads, with_values=False)
    out = _sgd.stratified_examples(7, user_starts, items, None, None, user_order, n_threads, 200, 4,
                                   group_positives=True)
    candidates, block_candidates, groups, starts, grouped = out[5], out[6], out[8], out[9], out[10]
    group_of = np.empty(200, dtype=np.int64)
    for block in range(groups.shape[0]):
        group_of[candidates[block_candidates[block, 0]:block_candidates[block, 1]]] = groups[block]
    expected_starts, expected_grouped = grouped_by_reference(user_starts, items, group_of)
    np.testing.assert_array_equal(starts, expected_starts)
    np.testing.assert_array_equal(grouped, expected_grouped)
    ungrouped = _sgd.stratified_examples(7, user_starts, items, None, None, user_order, n_threads, 200, 4)
    assert ungrouped[9] is None and ungrouped[10] is None


@pytest.mark.parametrize("n_threads", [2, 3])
def test_grouping_positives_leaves_the_cells_as_they_are(n_threads):
    """group_positives only adds the grouped positives: the cells hold the same examples in the
    same order. With two threads this compares the scatter loop for two cells (counters in
    registers, taken without group_positives) with the general one (taken with it)."""
    (_, items, labels, weights, user_starts, user_order), _ = layout(n_threads=n_threads)
    plain = _sgd.stratified_examples(5, user_starts, items, labels, weights, user_order, n_threads, 200, 4)
    grouped = _sgd.stratified_examples(5, user_starts, items, labels, weights, user_order, n_threads, 200, 4,
                                       group_positives=True)
    for index in range(9):
        if isinstance(plain[index], np.ndarray):
            np.testing.assert_array_equal(plain[index], grouped[index])
        else:
            assert plain[index] == grouped[index]


@needs_openmp
def test_strata_with_user_features(monkeypatch):
    """User features (shared rows, Hogwild on that side) with identity items still train in
    strata, and every user feature that some user holds moves."""
    calls = captured_epochs(monkeypatch)
    interactions = strata_interactions()
    user_features = sp.hstack([sp.identity(400, format="csr", dtype=np.float32),
                               sp.random(400, 20, density=0.2, format="csr", random_state=1, dtype=np.float32)]).tocsr()
    start = strata_model().fit(interactions, user_features=user_features, epochs=0)
    model = strata_model().fit(interactions, user_features=user_features, epochs=2, num_threads=2)
    assert calls[-1].get("candidate_items") is not None and calls[-1]["user_features"] is not None
    assert np.isfinite(model.user_embeddings).all()
    held = np.flatnonzero(np.diff(user_features.tocsc().indptr) > 0)
    assert np.all(np.any(model.user_embeddings[held] != start.user_embeddings[held], axis=1))


def epochs_on_threads(run_epoch, arguments, thread_counts):
    """{num_threads: the parameter arrays after run_epoch(**arguments) on copies of them}."""
    trained = {}
    for num_threads in thread_counts:
        parameters = {side: tuple(None if array is None else array.copy() for array in arguments[side])
                      for side in ("user_parameters", "item_parameters")}
        run_epoch(**{**arguments, **parameters, "num_threads": num_threads})
        trained[num_threads] = parameters
    return trained


@needs_openmp
@pytest.mark.parametrize("schedule", ["adagrad", "adadelta", "sgd"])
@pytest.mark.parametrize("loss", ["logistic", "bpr", "warp", "warp-kos"])
def test_a_stratified_epoch_on_two_threads_equals_its_blocks_run_one_after_another(monkeypatch, loss, schedule):
    """In a round the threads train disjoint users and items, so two threads compute what one
    thread computes running the same blocks in turn, bit for bit. This holds the private bias
    copies of stratified epochs to it: each row's trained values, and only those, go back (a
    copy whose row did not change must not overwrite one that did)."""
    run_epoch = _sgd.run_epoch
    calls = captured_epochs(monkeypatch, run=False)
    interactions = strata_interactions(negatives=loss == "logistic")
    model = strata_model(loss, learning_schedule=schedule)
    model.fit(interactions, epochs=0).fit_partial(interactions, epochs=1, num_threads=2)
    arguments = calls[-1]
    assert arguments.get("candidate_items") is not None and arguments["rounds"] >= 2
    trained = epochs_on_threads(run_epoch, arguments, (2, 1))
    for side in ("user_parameters", "item_parameters"):
        arrays = zip(trained[2][side], trained[1][side], arguments[side])
        for index, (parallel, sequential, before) in enumerate(arrays):
            if before is None:
                continue
            # the epoch trained this array (a user's bias cancels out of the ranking losses)
            biases = index % 2 == 1
            assert np.array_equal(sequential, before) == (biases and side == "user_parameters" and loss != "logistic")
            np.testing.assert_array_equal(parallel, sequential)


@needs_openmp
@pytest.mark.parametrize("loss", ["bpr", "warp-kos"])
@pytest.mark.parametrize("n_strata", [2, 3, 5])
def test_stratified_blocks_train_the_same_on_any_number_of_threads(monkeypatch, loss, n_strata):
    """Threads take stratified blocks as their predecessors (the previous round's blocks of the
    same user run and item group) are trained, with no barrier: with fewer, as many or more
    threads than strata, every row sees the same updates in the same order as on one thread."""
    run_epoch = _sgd.run_epoch
    calls = captured_epochs(monkeypatch, run=False)
    interactions = strata_interactions()
    model = strata_model(loss)
    model.fit(interactions, epochs=0).fit_partial(interactions, epochs=1, num_threads=2)
    arguments = dict(calls[-1])
    csr = interactions.tocsr()
    csr.sort_indices()
    user_starts = csr.indptr.astype(np.int64)
    user_order = np.random.default_rng(3).permutation(csr.shape[0]).astype(np.int32)
    (users, items, _, _, block_ranges, candidates, block_candidates, rounds, groups, group_starts,
     grouped_items) = _sgd.stratified_examples(11, user_starts, csr.indices.astype(np.int32), None, None,
                                               user_order, n_strata, csr.shape[1], 4, part_examples=150,
                                               group_positives=loss == "warp-kos")
    assert rounds >= 2 * n_strata  # several parts: blocks of a run follow each other across parts
    arguments.update(example_users=users, example_items=items, example_labels=None, example_weights=None,
                     block_ranges=block_ranges, candidate_items=candidates, block_candidates=block_candidates,
                     rounds=rounds)
    if loss == "warp-kos":
        arguments.update(block_groups=groups, group_positive_starts=group_starts,
                         group_positive_indices=grouped_items)
    trained = epochs_on_threads(run_epoch, arguments, (1, 2, 4))
    for num_threads in (2, 4):
        for side in ("user_parameters", "item_parameters"):
            for parallel, sequential in zip(trained[num_threads][side], trained[1][side]):
                if sequential is not None:
                    np.testing.assert_array_equal(parallel, sequential)
    # the epoch trained: item embeddings moved
    assert not np.array_equal(trained[1]["item_parameters"][0], arguments["item_parameters"][0])
