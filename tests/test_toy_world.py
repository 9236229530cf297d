"""The shapes toy world: grammar round trips, parse errors, renderer, weight-free scorer, splits and queries."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from promptloop_env.toy.grammar import (
    BACKGROUNDS,
    COLORS,
    SHAPES,
    Object,
    ObjectSpec,
    ParseError,
    Scene,
    Spec,
    caption,
    parse,
    random_scene,
    sample_queries,
    spec_of,
    split_of,
    vocabulary,
)
from promptloop_env.toy.renderer import render
from promptloop_env.toy.scorer import Verdict, accuracy, score


def _consistent(spec: Spec, scene: Scene) -> bool:
    """Every attribute the spec states is the scene's."""
    if len(spec.objects) != len(scene.objects):
        return False
    for stated, true in zip(spec.objects, scene.objects, strict=True):
        for name in ("shape", "color", "size"):
            if getattr(stated, name) is not None and getattr(stated, name) != getattr(true, name):
                return False
    return all(
        getattr(spec, name) is None or getattr(spec, name) == getattr(scene, name)
        for name in ("background", "position", "relation")
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_caption_round_trip(seed):
    rng = np.random.default_rng(seed)
    for _ in range(300):
        scene = random_scene(rng)
        text = caption(scene, rng)
        assert text == text.lower()
        assert parse(text) == spec_of(scene), text
        assert set(text.replace(",", " ").split()) <= set(vocabulary())


@pytest.mark.parametrize("drop", [0.3, 1.0])
def test_caption_with_dropped_attributes_is_consistent(drop):
    rng = np.random.default_rng(7)
    for _ in range(300):
        scene = random_scene(rng)
        text = caption(scene, rng, drop=drop)
        spec = parse(text)
        assert _consistent(spec, scene), (text, spec, scene)
        assert all(o.color is not None and o.shape is not None for o in spec.objects)
        if drop == 1.0:
            assert spec.background is None and spec.position is None and spec.relation is None


def test_captions_vary_in_wording():
    rng = np.random.default_rng(0)
    scene = Scene((Object("circle", "red", "small"),), "gray", position="left")
    texts = {caption(scene, rng) for _ in range(200)}
    assert len(texts) > 50
    assert all(parse(t) == spec_of(scene) for t in texts)


def test_parse_canonicalises_synonyms_case_and_punctuation():
    spec = parse("On a GREY backdrop: a Big red disk, ABOVE a tiny blue box!")
    assert spec == Spec(
        objects=(ObjectSpec("circle", "red", "large"), ObjectSpec("square", "blue", "small")),
        background="gray",
        relation="above",
    )
    assert spec.attributes() == [
        "color_0",
        "shape_0",
        "size_0",
        "color_1",
        "shape_1",
        "size_1",
        "relation",
        "background",
        "count",
    ]
    one = parse("a small red circle on the left on a white background")
    assert one.attributes() == ["color", "shape", "size", "position", "background", "count"]
    assert parse("a green triangle").attributes() == ["color", "shape", "count"]


def test_parse_errors_name_the_unknown_words():
    with pytest.raises(ParseError, match=r"unknown words \['zebra', 'mars'\]") as info:
        parse("a zebra on mars")
    assert isinstance(info.value, ValueError)
    assert "a small red circle on the left on a white background" in str(info.value)
    for bad, message in [
        ("", "no words"),
        ("on a white background", "no object"),
        ("a red circle and a blue square and a green box", "3 objects"),
        ("a red circle on the left and a blue square", "position with two objects"),
        ("a red circle above", "relation or 'and' with a single object"),
        ("a big red", "not followed by a shape"),
        ("a red circle blue square", "joined by one relation"),
    ]:
        with pytest.raises(ParseError, match=message):
            parse(bad)


def test_scene_validation():
    red = Object("circle", "red", "small")
    with pytest.raises(ValueError, match="differ in colour"):
        Scene((red, Object("square", "red", "large")), "white", relation="above")
    with pytest.raises(ValueError, match="needs a position"):
        Scene((red,), "white")
    with pytest.raises(ValueError, match="no position"):
        Scene((red, Object("square", "blue", "large")), "white", position="left", relation="above")
    with pytest.raises(ValueError, match="shape="):
        Object("star", "red", "small")
    with pytest.raises(ValueError, match="background="):
        Scene((red,), "green", position="left")
    assert len(COLORS) == 8 and len(BACKGROUNDS) == 4 and SHAPES == ("circle", "square", "triangle")


def test_render_is_deterministic_with_right_shape():
    scene = Scene((Object("triangle", "blue", "large"), Object("square", "pink", "small")), "brown", relation="below")
    a, b = render(scene), render(scene)
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert render(scene, size=64).shape == (64, 64, 3)
    jittered = render(scene, rng=np.random.default_rng(0))
    assert jittered.shape == (32, 32, 3) and not np.array_equal(jittered, a)
    np.testing.assert_array_equal(jittered, render(scene, rng=np.random.default_rng(0)))
    assert tuple(a[0, 0]) == BACKGROUNDS["brown"]


def test_scorer_accepts_renders_and_rejects_other_scenes():
    rng = np.random.default_rng(123)
    accepted = rejected = 0
    for _ in range(300):
        scene = random_scene(rng)
        accepted += score(render(scene, rng=rng), spec_of(scene)).all_correct
        other = random_scene(rng)
        while spec_of(other) == spec_of(scene):
            other = random_scene(rng)
        rejected += not score(render(scene, rng=rng), spec_of(other)).all_correct
    assert accepted >= 0.99 * 300
    assert rejected >= 0.95 * 300


def test_scorer_single_attribute_and_caption_queries():
    scene = Scene((Object("circle", "red", "small"),), "white", position="left")
    image = render(scene)
    verdict = score(image, "a small red circle on the left on a white background")
    assert verdict.all_correct and verdict.fraction == 1.0
    assert list(verdict.checks) == ["color", "shape", "size", "position", "background", "count"]
    wrong = score(image, "a large red square on the right on a black background")
    assert wrong.checks == {
        "color": True,
        "shape": False,
        "size": False,
        "position": False,
        "background": False,
        "count": True,
    }
    assert wrong.fraction == pytest.approx(2 / 6)
    pair = Scene((Object("square", "green", "large"), Object("triangle", "orange", "small")), "gray", relation="above")
    assert score(render(pair), "a green box over an orange triangle").all_correct
    flipped = score(render(pair), "a green box below an orange triangle")
    assert not flipped.checks["relation"] and not flipped.all_correct
    assert not score(render(pair), "a green box").checks["count"]
    with pytest.raises(ParseError):
        score(image, "a zebra")


@pytest.mark.parametrize("kind", ["black", "white", "noise", "float_noise", "gray2d"])
def test_scorer_on_images_without_objects(kind):
    rng = np.random.default_rng(0)
    image = {
        "black": np.zeros((32, 32, 3), np.uint8),
        "white": np.full((32, 32, 3), 255, np.uint8),
        "noise": rng.integers(0, 256, (32, 32, 3)).astype(np.uint8),
        "float_noise": rng.random((48, 40, 3)),
        "gray2d": np.full((32, 32), 128, np.uint8),
    }[kind]
    for query in ("a small red circle on the left on a white background", "a red circle above a blue square"):
        verdict = score(image, query)
        assert isinstance(verdict, Verdict)
        assert not verdict.all_correct
        assert 0.0 <= verdict.fraction < 1.0


def test_accuracy_aggregates_per_attribute_kind():
    rng = np.random.default_rng(5)
    scenes = [random_scene(rng, num_objects=2) for _ in range(10)]
    images = [render(s) for s in scenes]
    result = accuracy(images, [spec_of(s) for s in scenes])
    assert result["all_correct"] == 1.0 and result["color"] == 1.0 and result["relation"] == 1.0
    assert "position" not in result
    blank = accuracy([np.zeros((32, 32, 3), np.uint8)], ["a red circle on a black background"])
    assert blank["background"] == 1.0 and blank["color"] == 0.0 and blank["all_correct"] == 0.0


def test_split_of_is_deterministic_and_uses_both_splits():
    rng = np.random.default_rng(0)
    specs = [spec_of(random_scene(rng)) for _ in range(2000)]
    splits = [split_of(s) for s in specs]
    assert splits == [split_of(s) for s in specs]
    assert 0.05 < splits.count("test") / len(splits) < 0.15
    code = (
        "from promptloop_env.toy.grammar import *; import numpy as np; rng = np.random.default_rng(0); "
        "print(''.join(split_of(spec_of(random_scene(rng)))[1] for _ in range(200)))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # str hashes differ there; the split must not
    other_process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert other_process.stdout.strip() == "".join(s[1] for s in splits[:200])


@pytest.mark.parametrize("split", ["train", "test"])
def test_sample_queries_reproducible_and_in_split(split):
    queries = sample_queries(50, split, seed=3)
    assert queries == sample_queries(50, split, seed=3)
    assert queries != sample_queries(50, split, seed=4)
    assert len(queries) == 50
    for query in queries:
        parse(query)
    # The split is the full scene's (captions may drop attributes): regenerate the scenes and check them.
    rng = np.random.default_rng(3)
    regenerated = []
    while len(regenerated) < 50:
        scene = random_scene(rng)
        if split_of(spec_of(scene)) == split:
            regenerated.append(caption(scene, rng, drop=0.3))
            assert _consistent(parse(regenerated[-1]), scene)
    assert regenerated == queries
    singles = sample_queries(20, split, seed=1, num_objects=1, drop=0.0)
    assert all(len(parse(q).objects) == 1 and split_of(parse(q)) == split for q in singles)
    with pytest.raises(ValueError, match="split"):
        sample_queries(1, "validation", seed=0)


# ---------------------------------------------------------------------------------------------------------
# Toy world v2: the model's dialect, users' style, and the neglect in the training data


def test_model_captions_are_mostly_the_canonical_dialect():
    from promptloop_env.toy.grammar import describe, model_caption

    rng = np.random.default_rng(0)
    canonical = 0
    for _ in range(1000):
        scene = random_scene(rng)
        text = model_caption(scene, rng, dialect_rate=0.1, drop=0.0)
        assert parse(text) == spec_of(scene), text
        canonical += text == describe(spec_of(scene))
    assert 850 <= canonical <= 950  # ~90 % canonical (a random phrasing can coincide with it)
    with pytest.raises(ValueError, match="dialect_rate"):
        model_caption(scene, rng, dialect_rate=1.5)
    pair = random_scene(rng, 2)
    for form, marker in (("restate", ", a"), ("emphasis", "")):
        text = model_caption(pair, rng, drop=0.0, restated=1, salient_form=form)
        assert parse(text) == spec_of(pair) and marker in text
    color = pair.objects[1].color
    assert f"{color} {color}" in model_caption(pair, rng, restated=1, salient_form="emphasis")
    with pytest.raises(ValueError, match="salient_form"):
        model_caption(pair, rng, restated=1, salient_form="shout")


def test_plain_color_captions_never_use_the_colour_synonyms_users_write():
    from promptloop_env.toy.grammar import color_synonyms, model_caption, user_query

    synonyms = set(color_synonyms())
    assert {"scarlet", "navy", "turquoise"} <= synonyms and not synonyms & set(COLORS)
    rng = np.random.default_rng(0)
    plain, mixed, user = set(), set(), set()
    for _ in range(2000):
        scene = random_scene(rng)
        text = model_caption(scene, rng, dialect_rate=1.0, drop=0.0, plain_colors=True)
        assert parse(text) == spec_of(scene), text
        plain |= set(text.split())
        mixed |= set(model_caption(scene, rng, dialect_rate=1.0, drop=0.0).split())
        user |= set(user_query(scene, rng).split())
    assert not plain & synonyms and synonyms <= mixed and synonyms <= user


def test_user_queries_are_parsed_and_unlike_the_captions():
    from promptloop_env.toy.grammar import describe, user_query

    rng = np.random.default_rng(1)
    rare = {"scarlet", "lime", "navy", "golden", "amber", "violet", "rose", "turquoise", "disk", "box"}
    hits = same = 0
    for _ in range(500):
        scene = random_scene(rng)
        text = user_query(scene, rng)
        spec = parse(text)
        assert _consistent(spec, scene), (text, spec)
        assert spec.position == scene.position and spec.relation == scene.relation  # never dropped
        hits += bool(rare & set(text.replace(",", " ").split()))
        same += text == describe(spec)
    assert hits > 250 and same == 0
    assert sample_queries(5, "test", seed=0, style="user") == sample_queries(5, "test", seed=0, style="user")
    with pytest.raises(ValueError, match="style"):
        sample_queries(5, "test", seed=0, style="poetic")


def test_render_can_hide_an_object():
    scene = Scene((Object("circle", "red", "large"), Object("square", "blue", "large")), "white", relation="above")
    both, hidden = render(scene), render(scene, hidden=(1,))
    assert score(both, spec_of(scene)).all_correct
    colors = {d.color for d in score(hidden, spec_of(scene)).detections}
    assert colors == {"red"}
    assert np.array_equal(hidden[:16], both[:16])  # the first object is drawn where it was


def test_user_prompt_sets_and_pickling():
    import pickle

    from promptloop_env.prompts import make_prompt_source

    for name in ("toy-user-train", "toy-user-test"):
        source = make_prompt_source(name)
        again = pickle.loads(pickle.dumps(source))
        queries = [source(np.random.default_rng(3)) for _ in range(3)]
        assert queries == [again(np.random.default_rng(3)) for _ in range(3)]
        assert all(parse(q) for q in queries)


def test_scripted_rewrites_and_the_neglect_controller_read_what_they_should():
    from agents.toy.scripted import REWRITES, NeglectController, Rewrite, objects_seen, swapped
    from promptloop_env.toy.grammar import describe, emphasise, restate, user_query

    rng = np.random.default_rng(4)
    for _ in range(100):
        scene = random_scene(rng)
        query = user_query(scene, rng)
        assert all(isinstance(rule(query), str) and rule(query) for rule in REWRITES.values())
        assert parse(REWRITES["canonical caption"](query)) == parse(query)
        assert REWRITES["canonical caption"](query) == describe(parse(query))
        flipped = swapped(parse(query))
        assert swapped(flipped) == parse(query)
    assert Rewrite("canonical caption").act({"query": "a cat", "prompt": "a cat"}) == ["a cat"]  # outside: kept
    with pytest.raises(ValueError, match="Unknown rewrite"):
        Rewrite("poetry")
    scene = Scene((Object("circle", "red", "large"), Object("square", "blue", "large")), "white", relation="above")
    query = "a red circle over a blue box"
    spec = parse(query)
    neglected = render(scene, hidden=(1,))
    assert objects_seen(neglected, spec) == [True, False] and objects_seen(render(scene), spec) == [True, True]
    leaked = render(scene, leaked=(1,))  # the blue square drawn red: its colour is missing too
    assert objects_seen(leaked, spec) == [True, False]
    assert not np.array_equal(leaked, neglected) and (leaked != render(scene)).any()
    controller = NeglectController(act_until=0.5, fix="restate")  # the toy world v3 attempt's fix
    obs = {"query": query, "prompt": query, "preview": neglected, "progress": np.array([0.15], np.float32)}
    assert controller.act(obs) == [restate(spec, 1)]  # the missing blue square is named again
    assert controller.act(dict(obs, preview=leaked)) == [restate(spec, 1)]
    obs.update(prompt=restate(spec, 1), preview=render(scene))
    assert controller.act(obs) == [restate(spec, 1)]  # both there: the fix in force is held
    obs.update(prompt=query, preview=render(scene))
    assert controller.act(obs) == [describe(spec)]  # both there from the start: the model's dialect
    obs.update(preview=neglected, progress=np.array([0.85], np.float32))
    assert controller.act(obs) == [describe(spec)]  # too late to add an object: hold
    reorder = NeglectController(act_until=0.5)  # the shipped toy world's fix: name the missing object first
    assert reorder.act(dict(obs, progress=np.array([0.15], np.float32))) == [describe(swapped(spec))]
    with pytest.raises(ValueError, match="Unknown fix"):
        NeglectController(fix="shout")
    assert restate(spec, 1) == "a red circle above a blue square, a blue square"
    assert parse(restate(spec, 0)) == parse(restate(spec, 1)) == spec  # the same scene, one object named again
    with pytest.raises(ParseError, match="3 objects"):
        parse("a red circle above a blue square, a green square")  # a third object, not a restatement
    with pytest.raises(ValueError, match="two-object"):
        restate(parse("a red circle"), 0)
    emphasis = NeglectController(act_until=0.5, fix="emphasise")
    assert emphasis.act(dict(obs, progress=np.array([0.15], np.float32))) == [emphasise(spec, 1)]
    assert emphasise(spec, 1) == "a red circle above a blue blue square"  # the colour word doubled in place
    assert emphasise(parse("an orange circle left of a small red square"), 0).startswith("an orange orange circle")
    assert parse(emphasise(spec, 0)) == parse(emphasise(spec, 1)) == spec
    assert REWRITES["canonical, second object emphasised"](query) == emphasise(spec, 1)
    with pytest.raises(ParseError, match="two colors"):
        parse("a red blue circle")  # two different colours are not an emphasis
    with pytest.raises(ValueError, match="two-object"):
        emphasise(parse("a red circle"), 0)


def test_training_data_failures_fall_on_the_object_that_is_not_restated():
    from collections import Counter

    from promptloop_env.toy.train import draw_failure

    rng = np.random.default_rng(0)
    pair = Scene((Object("circle", "red", "large"), Object("square", "blue", "large")), "white", relation="above")
    single = Scene((Object("circle", "red", "large"),), "white", position="left")
    v3 = dict(neglect=0.35, leak=0.25, failed_object="either", restate=0.3)
    draws = [draw_failure(rng, pair, **v3) for _ in range(4000)]
    for restated, hidden, leaked in draws:
        assert len(hidden) + len(leaked) <= 1
        if restated >= 0:  # the restated object is always drawn as stated
            assert restated not in hidden + leaked
    counts = Counter(failed for _, hidden, leaked in draws for failed in hidden + leaked)
    assert abs(counts[0] - counts[1]) < 0.1 * len(draws)  # either object fails, about equally often
    assert 0.55 < (counts[0] + counts[1]) / len(draws) < 0.65  # at neglect + leak, restated or not
    restated_share = np.mean([r >= 0 for r, _, _ in draws])
    assert 0.25 < restated_share < 0.35
    v2 = [draw_failure(rng, pair, neglect=0.5) for _ in range(1000)]  # toy world v2: the second object only
    assert {h for _, h, lk in v2 if h} == {(1,)} and not any(lk for _, _, lk in v2)
    assert all(draw_failure(rng, single, **v3) == (-1, (), ()) for _ in range(100))


def test_forgetting_words_redraws_only_the_tokens_no_seen_word_uses():
    import torch

    from promptloop_env.toy.grammar import color_synonyms, vocabulary
    from promptloop_env.toy.model import TOY_MODEL_B_DIR, load_toy_pipeline
    from promptloop_env.toy.train import forget_words

    pipe = load_toy_pipeline(TOY_MODEL_B_DIR, cache=False)
    table = pipe.text_encoder.get_input_embeddings().weight
    before = table.detach().clone()
    synonyms = color_synonyms()
    seen = [w for w in vocabulary() if w not in synonyms]
    tokens = forget_words(pipe.text_encoder, pipe.tokenizer, synonyms, seen, seed=0)
    assert "navy</w>" in tokens and "scar" in tokens and "an</w>" not in tokens  # "cyan", "orange" keep "an"
    ids = pipe.tokenizer.convert_tokens_to_ids(tokens)
    changed = (table.detach() != before).any(dim=1).nonzero().flatten().tolist()
    assert sorted(changed) == sorted(ids)
    words = sorted({t for w in ("red", "blue", "circle", "left", "above") for t in pipe.tokenizer(w).input_ids[1:-1]})
    assert table[ids].std().item() < 0.03 < table[words].std().item()  # the init scale (0.02), not a trained one
    drawn = table[ids].detach().clone()
    assert forget_words(pipe.text_encoder, pipe.tokenizer, synonyms, seen, seed=0) == tokens
    assert torch.equal(table[ids], drawn)  # seeded


def test_training_script_continues_a_toy_model_and_saves_it_atomically(tmp_path):
    import json

    from promptloop_env.toy.model import TOY_MODEL_B_DIR, load_toy_pipeline
    from promptloop_env.toy.train import main

    out, log = tmp_path / "b", tmp_path / "log.md"
    tiny = ["--pool", "64", "--batch", "8", "--unet-steps", "2", "--warmup", "1", "--eval-every", "2"]
    tiny += ["--eval-queries", "2", "--eval-seeds", "1", "--threads", "1", "--log", str(log)]
    v4 = ["--neglect", "0.35", "--leak", "0.25", "--failed-object", "either", "--restate", "0.3"]
    v4 += ["--salient-form", "emphasis", "--plain-colors"]
    main([*tiny, *v4, "--init-from", str(TOY_MODEL_B_DIR), "--share-vae", "--out", str(out)])
    assert not (out / "vae").exists()  # toy-b shares the main model's VAE
    assert sorted(p.name for p in out.rglob("*.safetensors")) == [
        "diffusion_pytorch_model.safetensors",
        "model.safetensors",
    ]
    assert json.loads((out / "training_config.json").read_text())["chosen_step"] == 2
    assert "--init-from" in log.read_text() and "--unet-channels" not in log.read_text()
    assert "--salient-form emphasis" in log.read_text() and "--plain-colors" in log.read_text()
    assert "forgot the colour synonyms scarlet" in log.read_text()
    assert list(load_toy_pipeline(out, cache=False).unet.config.block_out_channels) == [32, 64]
    with pytest.raises(SystemExit, match="--failed-object"):
        main([*tiny, "--failed-object", "first", "--out", str(tmp_path / "c")])
    with pytest.raises(SystemExit, match="--salient-form"):
        main([*tiny, "--salient-form", "shout", "--out", str(tmp_path / "c")])
    with pytest.raises(SystemExit, match="sum <= 1"):
        main([*tiny, "--neglect", "0.7", "--leak", "0.5", "--out", str(tmp_path / "c")])
