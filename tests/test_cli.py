"""The ``fastrank`` command: train -> recommend -> evaluate round trips, bad input, help, and the demo."""

import os
import subprocess
import sys

import numpy as np
import pytest

from fastrank import FastRank
from fastrank.cli import main

N_USERS, N_ITEMS = 30, 12


# ---------------------------------------------------------------------------- fixtures

def user_name(row):
    return f"user {row}" if row else "007"  # an id with a space, and one that is not the number 7


def item_name(col):
    return f"item-{col}" if col != 3 else "7"


def write_data(directory):
    """interactions.csv (weighted), test.csv, user_features.csv and item_features.csv in ``directory``.

    Users with an even row like the even items, odd users the odd items, and the features say
    which half each user and item is in; user ``newcomer`` is only in the user features.
    """
    rng = np.random.default_rng(0)
    train_lines, test_lines = ["user_id,item_id,weight"], ["user_id,item_id"]
    for row in range(N_USERS):
        liked = rng.permutation(np.arange(row % 2, N_ITEMS, 2))
        for col in liked[:3]:
            train_lines.append(f"{user_name(row)},{item_name(col)},{1 + col % 3}")
        test_lines.append(f"{user_name(row)},{item_name(liked[3])}")
    user_lines = ["id,feature"] + [f"{user_name(row)},{'even' if row % 2 == 0 else 'odd'}" for row in range(N_USERS)]
    user_lines.append("newcomer,odd")
    item_lines = ["id,feature,weight"] + [f"{item_name(col)},{'even' if col % 2 == 0 else 'odd'},2.0"
                                          for col in range(N_ITEMS)]
    files = {}
    for name, lines in (("interactions", train_lines), ("test", test_lines), ("user_features", user_lines),
                        ("item_features", item_lines)):
        files[name] = directory / f"{name}.csv"
        files[name].write_text("\n".join(lines) + "\n", encoding="utf-8")
    return files


def train_arguments(files, output, *extra):
    return ["train", "--interactions", str(files["interactions"]), "--user-features", str(files["user_features"]),
            "--item-features", str(files["item_features"]), "--epochs", "15", "--components", "8", "--seed", "0",
            "--output", str(output), "--quiet", *extra]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The data files and a model trained on them by ``fastrank train``."""
    directory = tmp_path_factory.mktemp("cli")
    files = write_data(directory)
    model = directory / "model.npz"
    assert main(train_arguments(files, model)) == 0
    return files, model


def run_main(capsys, arguments):
    code = main([str(argument) for argument in arguments])
    out, err = capsys.readouterr()
    return code, out, err


def parse_recommendations(out):
    lines = out.strip().splitlines()
    assert lines[0].split() == ["user_id", "rank", "item_id", "score"]
    rows = []
    for line in lines[1:]:
        # user ids may contain a space: the last three fields are rank, item id and score
        head, rank, item, score = line.rsplit(None, 3)
        rows.append((head.strip(), int(rank), item, float(score)))
    return rows


def train_items(files):
    seen = {}
    for line in files["interactions"].read_text().splitlines()[1:]:
        user, item, _ = line.split(",")
        seen.setdefault(user, set()).add(item)
    return seen


# ---------------------------------------------------------------------------- round trip

def test_train_stores_mappings_features_and_interactions(trained):
    files, model_path = trained
    model = FastRank.load(model_path)
    extra = FastRank.load_extra(model_path)
    assert extra["user_ids"].tolist()[:2] == ["007", "user 1"]
    assert "newcomer" in extra["user_ids"].tolist()  # known by its features only
    assert set(extra["item_ids"].tolist()) == {item_name(col) for col in range(N_ITEMS)}
    assert sorted(extra["user_feature_names"].tolist()) == ["even", "odd"]
    n_users, n_items = len(extra["user_ids"]), len(extra["item_ids"])
    assert tuple(extra["user_features_shape"]) == (n_users, n_users + 2)  # identity + even/odd
    assert tuple(extra["item_features_shape"]) == (n_items, n_items + 2)
    assert tuple(extra["train_shape"]) == (n_users, n_items)
    assert extra["train_indices"].shape[0] == 3 * N_USERS
    assert model.user_embeddings.shape == (n_users + 2, 8)
    assert model.loss == "warp"


def test_recommend_prints_items_with_scores(trained, capsys):
    files, model_path = trained
    code, out, err = run_main(capsys, ["recommend", "--model", model_path, "--user", "007", "--user", "user 1",
                                       "-k", "4"])
    assert code == 0 and err == ""
    rows = parse_recommendations(out)
    assert [row[0] for row in rows] == ["007"] * 4 + ["user 1"] * 4
    assert [row[1] for row in rows] == [1, 2, 3, 4] * 2
    for user in ("007", "user 1"):
        scores = [row[3] for row in rows if row[0] == user]
        assert scores == sorted(scores, reverse=True)
    # the features separate the halves: user 1 (odd) is recommended odd items
    odd_items = {item_name(col) for col in range(1, N_ITEMS, 2)}
    assert {row[2] for row in rows if row[0] == "user 1"} <= odd_items


@pytest.mark.parametrize("k", [N_ITEMS + 1, 2**31 - 2])
def test_recommend_with_k_beyond_the_items_prints_every_item(trained, capsys, k):
    """k is capped at the item count (padding is never printed), so a huge k cannot make
    recommend allocate users x k."""
    files, model_path = trained
    code, out, err = run_main(capsys, ["recommend", "--model", model_path, "--user", "007", "-k", str(k)])
    assert code == 0 and err == ""
    assert sorted(row[2] for row in parse_recommendations(out)) == sorted(item_name(c) for c in range(N_ITEMS))


@pytest.mark.parametrize("command", ["recommend", "evaluate"])
def test_too_many_threads_is_a_clean_error(trained, capsys, command):
    files, model_path = trained
    extra = ["--user", "007"] if command == "recommend" else ["--test", files["test"]]
    code, out, err = run_main(capsys, [command, "--model", model_path, *extra, "--threads", "100000"])
    assert code != 0 and "num_threads must be <= 1024" in err and "Traceback" not in err


def test_recommend_exclude_seen_and_cold_start_user(trained, capsys):
    files, model_path = trained
    seen = train_items(files)
    code, out, _ = run_main(capsys, ["recommend", "--model", model_path, "--user", "007", "newcomer",
                                     "-k", str(N_ITEMS), "--exclude-seen"])
    assert code == 0
    rows = parse_recommendations(out)
    recommended = [row[2] for row in rows if row[0] == "007"]
    assert len(recommended) == N_ITEMS - 3 and not set(recommended) & seen["007"]
    newcomer = [row[2] for row in rows if row[0] == "newcomer"]
    assert len(newcomer) == N_ITEMS  # nothing seen; ranked by its features alone
    assert set(newcomer[:3]) <= {item_name(col) for col in range(1, N_ITEMS, 2)}


def test_evaluate_prints_the_metric_table(trained, capsys):
    files, model_path = trained
    code, out, err = run_main(capsys, ["evaluate", "--model", model_path, "--test", files["test"], "-k", "5"])
    assert code == 0 and err == ""
    lines = out.strip().splitlines()
    assert lines[0].startswith(f"{N_USERS} test interactions of {N_USERS} users")
    values = dict(line.rsplit(None, 1) for line in lines[2:])
    assert list(values) == ["precision@5", "recall@5", "NDCG@5", "MAP@5", "hit rate@5", "AUC"]
    values = {name: float(value) for name, value in values.items()}
    assert all(0.0 <= value <= 1.0 for value in values.values())
    assert values["AUC"] > 0.7  # the features make the halves easy
    assert values["precision@5"] == pytest.approx(values["recall@5"] / 5, abs=1e-4)  # one test item per user


def test_evaluate_skips_and_reports_unknown_ids_and_training_pairs(trained, capsys, tmp_path):
    files, model_path = trained
    test = tmp_path / "test.csv"
    first_train_pair = files["interactions"].read_text().splitlines()[1].rsplit(",", 1)[0]
    test.write_text(files["test"].read_text() + "stranger,item-1\n007,unknown item\n" + first_train_pair + "\n")
    code, out, err = run_main(capsys, ["evaluate", "--model", model_path, "--test", test])
    assert code == 0
    assert "skipped 2 of" in err and "'stranger'" in err
    assert "skipped 1 test row found in the training interactions" in err
    assert out.startswith(f"{N_USERS} test interactions")


def test_unweighted_interactions_and_other_losses(trained, capsys, tmp_path):
    files, _ = trained
    plain = tmp_path / "plain.csv"
    plain.write_text("\n".join(["user_id,item_id"] + [line.rsplit(",", 1)[0]
                                                      for line in files["interactions"].read_text().splitlines()[1:]]))
    for loss in ("warp-kos", "bpr"):
        model = tmp_path / f"{loss}.npz"
        code, _, err = run_main(capsys, ["train", "--interactions", plain, "--loss", loss, "--epochs", "2",
                                         "--components", "4", "--output", model])
        assert code == 0, err
        assert "training" in err and "model saved" in err  # progress and summary on stderr
        assert FastRank.load(model).loss == loss


def test_logistic_is_not_offered(capsys, trained, tmp_path):
    """A file of interactions has no negatives for logistic to learn from: trained on positives
    alone it ranked below popularity on ml-latest-small (and far below with genre features)."""
    files, _ = trained
    with pytest.raises(SystemExit) as info:
        main(["train", "--interactions", str(files["interactions"]), "--loss", "logistic",
              "--output", str(tmp_path / "m.npz")])
    assert info.value.code == 2 and "invalid choice: 'logistic'" in capsys.readouterr().err
    assert "logistic" in " ".join(build_parser_help("train"))


def build_parser_help(command):
    from fastrank.cli import build_parser

    parser = build_parser()
    return parser._subparsers._group_actions[0].choices[command].format_help().split()


def test_weights_count_only_by_their_ratios(capsys, tmp_path):
    """Play-count weights (in the hundreds) made BPR's adagrad steps diverge: the CLI divides the
    weights by their mean, so weights x100 train the model weights x1 train."""
    rng = np.random.default_rng(1)
    lines = [f"u{user},i{item},{rng.integers(1, 4)}" for user in range(40)
             for item in rng.choice(25, 6, replace=False)]
    embeddings = {}
    for scale in (1, 100):
        path = tmp_path / f"weights{scale}.csv"
        path.write_text("\n".join(["user_id,item_id,weight"] + [
            f"{line.rsplit(',', 1)[0]},{int(line.rsplit(',', 1)[1]) * scale}" for line in lines]) + "\n")
        model_path = tmp_path / f"model{scale}.npz"
        code, _, err = run_main(capsys, ["train", "--interactions", path, "--loss", "bpr", "--epochs", "5",
                                         "--components", "8", "--seed", "3", "--output", model_path, "--quiet"])
        assert code == 0, err
        embeddings[scale] = FastRank.load(model_path).item_embeddings
    np.testing.assert_allclose(embeddings[100], embeddings[1], rtol=1e-4, atol=1e-5)
    assert np.abs(embeddings[1]).max() < 5


def test_a_closed_stderr_does_not_stop_training(trained, tmp_path):
    """`fastrank train ... 2>&1 | head -1`: the first progress line after the reader left raised
    BrokenPipeError, and the model was never saved."""
    files, _ = trained
    model = tmp_path / "piped.npz"
    arguments = [sys.executable, "-m", "fastrank"] + train_arguments(files, model)
    arguments.remove("--quiet")
    process = subprocess.Popen(arguments, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    process.stderr.close()  # the reader is gone before the first line
    assert process.wait(timeout=120) == 0
    assert FastRank.load(model).item_embeddings.shape[1] == 8


def test_round_trip_through_python_m(trained, tmp_path):
    files, _ = trained
    model = tmp_path / "model.npz"
    python = [sys.executable, "-m", "fastrank"]
    environment = dict(os.environ, PYTHONWARNINGS="ignore")
    result = subprocess.run(python + train_arguments(files, model), capture_output=True, text=True, env=environment)
    assert result.returncode == 0, result.stderr
    result = subprocess.run(python + ["recommend", "--model", str(model), "--user", "user 2", "-k", "2"],
                            capture_output=True, text=True, env=environment)
    assert result.returncode == 0, result.stderr
    assert len(parse_recommendations(result.stdout)) == 2
    result = subprocess.run(python + ["recommend", "--model", str(model), "--user", "nobody"],
                            capture_output=True, text=True, env=environment)
    assert result.returncode == 2
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "'nobody'" in result.stderr


# ---------------------------------------------------------------------------- bad input

INTERACTIONS_CASES = {
    # name: (file contents, or None for no file, text the one-line error must contain)
    "missing file": (None, "does not exist"),
    "empty file": ("", "is empty"),
    "header only": ("user_id,item_id\n", "no records"),
    "missing column": ("user_id,weight\nalice,1\n", "'item_id'"),
    "unexpected column": ("user_id,item_id,timestamp\nalice,book,1\n", "'timestamp'"),
    "duplicate column": ("user_id,item_id,item_id\nalice,book,book\n", "'item_id' twice"),
    "wrong field count": ("user_id,item_id\nalice,book\nbob,film,2\n", "line 3: 3 fields"),
    "empty id": ("user_id,item_id\nalice,book\n,film\n", "line 3: empty user_id"),
    "NaN weight": ("user_id,item_id,weight\nalice,book,1\nbob,film,nan\n", "'nan'"),
    "infinite weight": ("user_id,item_id,weight\nalice,book,inf\n", "'inf'"),
    "negative weight": ("user_id,item_id,weight\nalice,book,-2\n", "'-2'"),
    "text weight": ("user_id,item_id,weight\nalice,book,heavy\n", "'heavy'"),
    "not UTF-8": (b"user_id,item_id\nal\xffce,book\n", "0xff"),
    # a quote left open swallowed every later line into one id, and training went on
    "unclosed quote": ('user_id,item_id\nalice,"Crouching Tiger\nbob,film\ncarol,book\n', "line break"),
    "tabs in a .csv": ("user_id\titem_id\nalice\tbook\n", "needs the .tsv extension"),
}


def assert_one_line_error(code, out, err, expected):
    assert code == 2
    assert out == ""
    assert "Traceback" not in err
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert expected in err, err


@pytest.mark.parametrize("case", sorted(INTERACTIONS_CASES))
def test_bad_interactions_file(case, capsys, tmp_path):
    contents, expected = INTERACTIONS_CASES[case]
    path = tmp_path / "interactions.csv"
    if isinstance(contents, bytes):
        path.write_bytes(contents)
    elif contents is not None:
        path.write_text(contents)
    code, out, err = run_main(capsys, ["train", "--interactions", path, "--output", tmp_path / "m.npz"])
    assert_one_line_error(code, out, err, expected)
    assert "interactions.csv" in err
    assert not (tmp_path / "m.npz").exists()


FEATURES_CASES = {
    "wrong column": ("id,tag\nalice,student\n", "'tag'"),
    "NaN weight": ("id,feature,weight\nalice,student,NaN\n", "'NaN'"),
    "empty feature": ("id,feature\nalice,\n", "empty feature"),
}


@pytest.mark.parametrize("side", ["user", "item"])
@pytest.mark.parametrize("case", sorted(FEATURES_CASES))
def test_bad_features_file(case, side, capsys, trained, tmp_path):
    files, _ = trained
    contents, expected = FEATURES_CASES[case]
    path = tmp_path / "features.csv"
    path.write_text(contents)
    code, out, err = run_main(capsys, ["train", "--interactions", files["interactions"], f"--{side}-features", path,
                                       "--output", tmp_path / "m.npz"])
    assert_one_line_error(code, out, err, expected)


def test_bad_files_that_are_directories_or_missing(capsys, trained, tmp_path):
    files, model = trained
    cases = [
        (["train", "--interactions", tmp_path, "--output", tmp_path / "m.npz"], "is a directory"),
        (["train", "--interactions", files["interactions"], "--item-features", tmp_path / "none.csv",
          "--output", tmp_path / "m.npz"], "none.csv"),
        (["train", "--interactions", files["interactions"], "--output", tmp_path / "no" / "m.npz"],
         "does not exist"),
        (["recommend", "--model", tmp_path / "missing.npz", "--user", "007"], "missing.npz"),
        (["evaluate", "--model", model, "--test", tmp_path / "missing.csv"], "missing.csv"),
    ]
    for arguments, expected in cases:
        assert_one_line_error(*run_main(capsys, arguments), expected)


def test_warp_kos_rejects_weights(capsys, trained, tmp_path):
    files, _ = trained
    code, out, err = run_main(capsys, ["train", "--interactions", files["interactions"], "--loss", "warp-kos",
                                       "--output", tmp_path / "m.npz"])
    assert_one_line_error(code, out, err, "'weight'")


def test_bad_models(capsys, trained, tmp_path):
    files, _ = trained
    garbage = tmp_path / "garbage.npz"
    garbage.write_text("not a model")
    plain = tmp_path / "plain.npz"
    FastRank(no_components=2, loss="warp").fit(np.eye(3), epochs=1).save(plain)
    for path, expected in ((garbage, "garbage.npz"), (plain, "no id mappings")):
        for arguments in (["recommend", "--model", path, "--user", "007"],
                          ["evaluate", "--model", path, "--test", files["test"]]):
            assert_one_line_error(*run_main(capsys, arguments), expected)


@pytest.mark.parametrize("edit, expected", [
    (lambda contents: contents.pop("extra/train_indices"), "lacks the stored array 'train_indices'"),
    (lambda contents: contents.update({"extra/item_ids": contents["extra/item_ids"][:1]}), "do not match its model"),
    (lambda contents: contents.update({"extra/train_indices": contents["extra/train_indices"] + 10**6}),
     "malformed csr matrix"),
])
def test_models_with_edited_mappings(capsys, trained, tmp_path, edit, expected):
    """Edited mappings raised KeyError and IndexError tracebacks (exit 1)."""
    files, model_path = trained
    with np.load(model_path) as archive:
        contents = dict(archive)
    edit(contents)
    edited = tmp_path / "edited.npz"
    np.savez(edited, **contents)
    for arguments in (["recommend", "--model", edited, "--user", "007", "--exclude-seen"],
                      ["evaluate", "--model", edited, "--test", files["test"]]):
        assert_one_line_error(*run_main(capsys, arguments), expected)


def test_unknown_user_and_unusable_test_file(capsys, trained, tmp_path):
    files, model = trained
    code, out, err = run_main(capsys, ["recommend", "--model", model, "--user", "007", "--user", "mallory"])
    assert_one_line_error(code, out, err, "'mallory'")
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("user_id,item_id\nmallory,item-1\n")
    code, out, err = run_main(capsys, ["evaluate", "--model", model, "--test", unknown])
    assert code == 2 and out == "" and "Traceback" not in err
    assert "'mallory'" in err and err.strip().splitlines()[-1].startswith("fastrank evaluate: error: no test rows")
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("user,item\n007,item-1\n")
    assert_one_line_error(*run_main(capsys, ["evaluate", "--model", model, "--test", wrong]), "'user'")


def test_parquet(capsys, trained, tmp_path):
    files, _ = trained
    pandas = pytest.importorskip("pandas")
    path = tmp_path / "interactions.parquet"
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        path.write_bytes(b"PAR1")
        code, out, err = run_main(capsys, ["train", "--interactions", path, "--output", tmp_path / "m.npz"])
        assert_one_line_error(code, out, err, "pip install pandas pyarrow")
        return
    frame = pandas.read_csv(files["interactions"], dtype={"user_id": str, "item_id": str})
    frame.to_parquet(path)
    model = tmp_path / "m.npz"
    code, _, err = run_main(capsys, ["train", "--interactions", path, "--epochs", "2", "--output", model])
    assert code == 0, err
    assert FastRank.load_extra(model)["user_ids"][0] == "007"
    garbage = tmp_path / "garbage.parquet"
    garbage.write_text("not parquet")
    assert_one_line_error(*run_main(capsys, ["train", "--interactions", garbage, "--output", model]),
                          "garbage.parquet")


def test_usage_errors_exit_2(capsys, trained):
    _, model = trained
    for arguments in ([], ["recommend", "--model", str(model)], ["recommend", "--model", str(model), "--user", "007",
                                                                   "-k", "0"], ["train", "--loss", "hinge"]):
        with pytest.raises(SystemExit) as exit_info:
            main(arguments)
        assert exit_info.value.code == 2
    capsys.readouterr()


@pytest.mark.parametrize("command", [None, "demo", "train", "recommend", "evaluate"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"] if command is None else [command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: fastrank")
    if command is None:
        for name in ("demo", "train", "recommend", "evaluate"):
            assert name in out
    if command == "demo":
        assert "--n-customers" not in out  # the size overrides are for tests only


# ---------------------------------------------------------------------------- the demo

def test_catalogue_names_and_shapes():
    from fastrank.demo import CUSTOMER_ATTRIBUTES, PLAN_ATTRIBUTES, make_telecom_catalogue

    catalogue = make_telecom_catalogue(n_customers=200, n_plans=30, random_state=1)
    n_profiles, n_kinds = 4 * 3 * 3, 4 * 3 * 3
    assert catalogue.train.shape == catalogue.test.shape == (200, 30)
    assert catalogue.user_features.shape == (200, 200 + 10 + n_profiles)
    assert catalogue.item_features.shape == (30, 30 + 10 + n_kinds)
    assert catalogue.user_feature_labels.shape == (catalogue.user_features.shape[1],)
    assert len(set(catalogue.plan_names.tolist())) == 30
    assert catalogue.customer_ids[0] == "C00000"
    # each row: identity, one value per attribute and the profile, each weighted 1/5
    for features, labels, ids, attributes, values in (
        (catalogue.user_features, catalogue.user_feature_labels, catalogue.customer_ids, CUSTOMER_ATTRIBUTES,
         catalogue.customers),
        (catalogue.item_features, catalogue.item_feature_labels, catalogue.plan_names, PLAN_ATTRIBUTES,
         catalogue.plans),
    ):
        for row in (0, 7):
            names = sorted(labels[features[row].indices].tolist())
            expected = [ids[row]] + [f"{name}={values[name][row]}" for name in attributes]
            expected.append("profile=" + "/".join(values[name][row] for name in attributes))
            assert names == sorted(expected)
            np.testing.assert_allclose(features[row].data, 0.2)
        for name, levels in attributes.items():
            assert set(values[name].tolist()) <= set(levels)
    description = catalogue.describe_customer(3)
    assert description.startswith("segment=") and ", usage=" in description and ", device=" in description
    assert catalogue.describe_plan(0).startswith("type=")
    name = catalogue.plan_names[0]
    assert name.split()[0].lower() == catalogue.plans["type"][0]


def test_new_customer_features():
    from fastrank.demo import make_telecom_catalogue

    catalogue = make_telecom_catalogue(n_customers=50, n_plans=10, random_state=0)
    row = catalogue.new_customer_features(segment="student", usage="heavy", device="android")
    assert row.shape == (1, catalogue.user_features.shape[1])
    assert sorted(catalogue.user_feature_labels[row.indices].tolist()) == [
        "device=android", "profile=student/heavy/android", "segment=student", "usage=heavy"]
    with pytest.raises(ValueError, match="'segment=pirate'"):
        catalogue.new_customer_features(segment="pirate", usage="heavy", device="android")


def test_catalogue_features_carry_signal():
    """With its features, WARP beats the popularity baseline and the same model without features."""
    from fastrank.demo import make_telecom_catalogue, popularity_model
    from fastrank.evaluation import precision_at_k

    catalogue = make_telecom_catalogue(n_customers=2000, n_plans=100, random_state=0)
    train, test = catalogue.train, catalogue.test
    popularity = precision_at_k(popularity_model(train), test, train, k=5).mean()
    features = {"user_features": catalogue.user_features, "item_features": catalogue.item_features}
    hybrid = FastRank(no_components=32, loss="warp", random_state=0).fit(train, epochs=15, **features)
    with_features = precision_at_k(hybrid, test, train, k=5, **features).mean()
    plain = FastRank(no_components=32, loss="warp", random_state=0).fit(train, epochs=15)
    without_features = precision_at_k(plain, test, train, k=5).mean()
    assert with_features > 1.15 * popularity
    assert with_features > without_features


def test_popularity_model_scores_training_counts():
    from fastrank.demo import popularity_model

    train = np.array([[1, 1, 0, 0], [0, 1, 0, 1], [0, 1, 0, 1]], dtype=np.float32)
    model = popularity_model(train)
    np.testing.assert_array_equal(model.predict(0, np.arange(4)), [1, 3, 0, 2])
    ids, _ = model.recommend([0, 2], k=2, filter_interactions=train)
    np.testing.assert_array_equal(ids, [[3, 2], [0, 2]])  # seen items left out, ties to the lower id


def demo_lines(capsys, output):
    code = main(["demo", "--quick", "--output", str(output)])
    out, err = capsys.readouterr()
    assert code == 0
    return out, err


def test_quick_demo_prints_the_table_recommendations_and_plot(capsys, tmp_path):
    out, err = demo_lines(capsys, tmp_path / "out")
    lines = out.splitlines()
    header = next(position for position, line in enumerate(lines) if line.startswith("model"))
    assert lines[header].split() == ["model", "precision@5", "recall@5", "NDCG@5", "AUC", "train", "s"]
    table = [line.split() for line in lines[header + 1:header + 6]]
    assert [row[0] for row in table] == ["popularity", "warp", "bpr", "warp-kos", "logistic"]
    for row in table:
        assert all(0.0 <= float(value) <= 1.0 for value in row[1:5])
    assert sum(line.startswith("Customer C") for line in lines) == 2
    assert any(line.startswith("New customer (segment=student, usage=heavy, device=android)") for line in lines)
    ranked = [line for line in lines if line.startswith("  1. ")]
    assert len(ranked) == 3
    assert "training warp" in err  # progress on stderr
    csv_lines = (tmp_path / "out" / "precision_at_5_by_epoch.csv").read_text().splitlines()
    assert csv_lines[0] == "epoch,warp,bpr,warp-kos,logistic" and len(csv_lines) == 4
    png = tmp_path / "out" / "precision_at_5_by_epoch.png"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib is not installed" in out
        return
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(png) in out


def test_quick_demo_without_matplotlib(capsys, tmp_path, monkeypatch):
    for module in ("matplotlib", "matplotlib.figure", "matplotlib.ticker"):
        monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    out, _ = demo_lines(capsys, tmp_path)
    assert "matplotlib is not installed" in out and "pip install matplotlib" in out
    assert not (tmp_path / "precision_at_5_by_epoch.png").exists()
    assert (tmp_path / "precision_at_5_by_epoch.csv").exists()
    assert "Done in" in out


def test_progress_lines_without_tqdm(monkeypatch, capsys):
    from fastrank import _console

    monkeypatch.setitem(sys.modules, "tqdm", None)
    assert list(_console.progress(range(8), 8, "work")) == list(range(8))
    assert capsys.readouterr().err.splitlines() == ["work: 2/8 epochs", "work: 4/8 epochs", "work: 6/8 epochs",
                                                    "work: 8/8 epochs"]
