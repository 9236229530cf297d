"""Pretraining of the toy policy on generic image-and-text skills, as a real MLLM arrives pretrained.

    python -m agents.toy.pretrain                 # about 25 minutes on 2 CPU cores (see below for the shipped one)
    python -m agents.toy.pretrain --steps 50 --episodes 64 --out /tmp/policy   # a quick run elsewhere

The paper's policy (Qwen2.5-VL-3B) can already describe an image, answer questions about it and rewrite a text
before RL teaches it *when and how* to use those skills for prompt refinement. This script gives the toy policy
the same start, and nothing more: it is never shown the refinement task's target (no reward, no scripted
controller, no "best" prompt). Four skills, each with its own instruction in the user message (the image is
always attached, as in the env):

- **describe** (``describe the image``): the canonical caption of what the image shows;
- **question** (``how many objects``, ``what colors``, ``shape of the red object``, ``size of the red
  object``, ``where is the red object``): a short answer in the grammar's words;
- **lack** (``text: <text>`` / ``what does the image lack``): the objects the text names that the image does not
  show (``a red square``, ``... and ...``, or ``nothing``);
- **rewrite** (``text: <text>`` / ``rewrite the text``): another phrasing of the same text: a random word order,
  synonyms and sentence form, with the two objects of a pair in either order (relation inverted), half of the
  time in the canonical form. The meaning (the parsed spec) is kept. Half of these examples show the image of
  another scene (the text, not the image, is what is rewritten), half a preview of the text's own trajectory.
  Drawn 40 % of the time, the other skills 20 % each.

A second, shorter **focus** stage (``--focus-steps``, learning rate ``--focus-lr``, constant or with
``--focus-schedule cosine`` falling to a tenth) continues with the rewrite skill 70 % of the time (clean
renders), answered in the grammar's plain caption form (:func:`~promptloop_env.toy.grammar.describe`, the form
an MLLM's prompt expansion takes) with the two objects of a pair in either order, half and half, on two-object
texts ``--focus-pairs`` of the time; the other three skills fill the rest, on renders and previews half and
half, so they are not forgotten. Why: after the first stage alone the policy kept the meaning of every
one-object text but of only 27-29 % of two-object texts (it bound colours and shapes to the wrong object and
inverted relations at random, ``benchmarks/results/toy_policy_probe.md``); a random phrasing lets each slot come
from either object, the plain form makes the binding learnable. The order stays a coin flip: which object to
name first is left to RL. ``--init-from <folder>`` starts from an earlier run's weights and runs the focus stage
alone (seeded on its own, so it is the same stage either way).

The shipped policy (``agents/toy/weights``, its log ``pretrain_log.md`` holds every stage's command) is the
default run followed by two more focus stages, because the relation of a pair was the last thing it learned
(after 1,800 focus steps it kept the meaning of 36-48 % of two-object user-style rewrites, nearly every miss a
relation word):

    python -m agents.toy.pretrain --out stage2                                  # skills, then focus (1,800)
    python -m agents.toy.pretrain --init-from stage2 --focus-steps 4000 --focus-pairs 0.85 --seed 2 --out stage3
    python -m agents.toy.pretrain --init-from stage3 --focus-steps 2500 --focus-pairs 0.9 \
        --focus-schedule cosine --episodes 512 --seed 3 --out agents/toy/weights

(the first two commands ran at commit 0c50545 or before, whose focus stage drew the other skills from clean
renders only). After them it keeps the meaning of 83-86 % of two-object rewrites
(``python benchmarks/grpo_clean_signal.py --measure toy``).

The images are clean renders of train-split scenes (a two-object scene drawn with one object left out 30 % of
the time, so that something can be lacking) and *the toy model's own trajectories*: previews at its
refinement points in :class:`~promptloop_env.vector.PromptLoopVectorEnv` episodes on
train-split queries of every style. A preview is labelled with what the trajectory's final image shows (the
scorer's detection): reading a noisy preview means predicting what it becomes.

In the env the policy is driven by :data:`INSTRUCTION` (its ``user_template``): the rewrite instruction on the
query. Whatever it learns to do with the preview beyond these skills must come from RL. Held-out accuracy of each
skill (test-split scenes, other trajectories, greedy answers) is logged every ``--eval-every`` steps to
``pretrain_log.md`` beside the weights (safetensors, written atomically). Seeded.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from promptloop_env._quiet import quiet_loading
from promptloop_env.toy.grammar import (
    BACKGROUNDS,
    POSITIONS,
    SHAPES,
    SIZES,
    ObjectSpec,
    ParseError,
    Scene,
    Spec,
    caption,
    describe,
    parse,
    random_scene,
    spec_of,
    split_of,
    user_query,
)
from promptloop_env.toy.renderer import render
from promptloop_env.toy.scorer import _relation, detect  # the scorer's own relation of two detections

from ..checkpoint import atomic_folder
from ..mllm import Turn
from . import TOY_POLICY_DIR, TOY_POLICY_SETTINGS, build_toy_policy
from .scripted import INVERSE, swapped

__all__ = [
    "INSTRUCTION",
    "PretrainConfig",
    "SKILLS",
    "focus_example",
    "paraphrase",
    "plain_rewrite",
    "seen_spec",
    "main",
]

#: The policy's instruction in the env (its ``user_template``): the generic rewrite skill applied to the query.
INSTRUCTION: str = TOY_POLICY_SETTINGS["user_template"]
SKILLS = ("describe", "question", "lack", "rewrite")
#: How often each skill is drawn in training.
SKILL_WEIGHTS = (0.2, 0.2, 0.2, 0.4)
#: Words of the instructions and answers beyond the grammar's.
INSTRUCTION_WORDS = (
    "describe image text rewrite what does lack nothing how many objects object where color colors shape size one two"
).split()


@dataclass
class PretrainConfig:
    steps: int = 6000
    batch_size: int = 32
    lr: float = 2e-3
    seed: int = 0
    hidden_size: int = 96
    num_layers: int = 3
    episodes: int = 1024
    eval_every: int = 500
    eval_n: int = 200
    focus_steps: int = 1800
    focus_lr: float = 1e-3
    focus_pairs: float = 0.7
    focus_schedule: str = "constant"
    init_from: str = ""
    out: str = str(TOY_POLICY_DIR)


# ---------------------------------------------------------------------------------------------------------
# What an image shows, and the skills' answers


def _noun(obj: ObjectSpec) -> str:
    return describe(Spec(objects=(dataclasses.replace(obj, size=None),)))


def _place(obj: ObjectSpec, position: str) -> str:
    """The canonical position phrase ("on the left") of a one-object spec."""
    bare = Spec(objects=(obj,))
    return describe(Spec(objects=(obj,), position=position))[len(describe(bare)) + 1 :]


def _relation_phrase(spec: Spec, i: int) -> str:
    """Where object ``i`` of a two-object spec is: "above a blue square"."""
    relation = spec.relation if i == 0 else INVERSE[spec.relation]
    pair = Spec(objects=(spec.objects[i], spec.objects[1 - i]), relation=relation)
    return describe(pair)[len(describe(Spec(objects=(spec.objects[i],)))) + 1 :]


def seen_spec(image: np.ndarray) -> Spec | None:
    """The full spec of what ``image`` shows by the scorer's detection (objects left to right for a pair's
    order as detected; relation from their centres), or ``None`` when it shows no object or more than two."""
    background, detections = detect(np.asarray(image))
    if not 1 <= len(detections) <= 2 or len({d.color for d in detections}) != len(detections):
        return None
    if background not in BACKGROUNDS or any(
        d.shape not in SHAPES or d.size not in SIZES or d.position not in POSITIONS for d in detections
    ):  # an unclear shape ("other"), size or background: no label
        return None
    objects = tuple(ObjectSpec(shape=d.shape, color=d.color, size=d.size) for d in detections)
    if len(detections) == 1:
        return Spec(objects=objects, background=background, position=detections[0].position)
    first, second = detections
    return Spec(objects=objects, background=background, relation=_relation(first, second))


def paraphrase(spec: Spec, rng: np.random.Generator) -> str:
    """Another phrasing of ``spec``: the pair in either order, then the canonical form half of the time, else a
    random phrasing of a scene with the same stated attributes (rejection-sampled: same parse)."""
    if len(spec.objects) == 2 and rng.random() < 0.5:
        spec = swapped(spec)
    if rng.random() < 0.5:
        return describe(spec)
    scene = _completed(spec, rng)
    drop = 0.0 if _is_full(spec) else 0.5
    for _ in range(200):
        text = caption(scene, rng, drop=drop) if rng.random() < 0.5 else user_query(scene, rng, drop=drop)
        if parse(text) == spec:
            return text
    return describe(spec)


def plain_rewrite(spec: Spec, rng: np.random.Generator) -> str:
    """The rewrite answer of the focus stage: ``spec`` in the grammar's plain caption form (:func:`describe`),
    the two objects of a pair in either order (relation inverted), half and half."""
    return describe(swapped(spec) if len(spec.objects) == 2 and rng.random() < 0.5 else spec)


def focus_example(
    rng: np.random.Generator, split: str, pairs: float, bank: list[Trajectory] | None = None
) -> tuple[dict, str]:
    """One example of the focus stage: the rewrite skill (clean renders) 70 % of the time, answered in the plain
    caption form (:func:`plain_rewrite`) on a two-object text with probability ``pairs``; else another skill, as
    in the first stage, on a clean render or a preview from ``bank`` (so that neither is forgotten)."""
    if rng.random() >= 0.7:
        return example(rng, bank or [], split, str(rng.choice(SKILLS[:3])))
    want = 2 if rng.random() < pairs else 1
    while True:
        observation, _ = example(rng, [], split, "rewrite", "render")
        spec = parse(observation["query"].split("\n")[0].removeprefix("text: "))
        if len(spec.objects) == want:
            return observation, plain_rewrite(spec, rng)


def _is_full(spec: Spec) -> bool:
    return spec.background is not None and all(o.size is not None for o in spec.objects)


def _completed(spec: Spec, rng: np.random.Generator) -> Scene:
    """A scene that states at least what ``spec`` states (unstated attributes drawn at random)."""
    from promptloop_env.toy.grammar import RELATIONS, Object

    objects = tuple(Object(shape=o.shape, color=o.color, size=o.size or str(rng.choice(SIZES))) for o in spec.objects)
    background = spec.background or str(rng.choice([b for b in BACKGROUNDS if b not in {o.color for o in objects}]))
    if len(objects) == 1:
        return Scene(objects=objects, background=background, position=spec.position or str(rng.choice(POSITIONS)))
    return Scene(objects=objects, background=background, relation=spec.relation or str(rng.choice(RELATIONS)))


def lack_answer(text_spec: Spec, shown: Spec | None) -> str:
    """The objects ``text_spec`` names whose colour ``shown`` lacks, or ``nothing``."""
    colors = {o.color for o in shown.objects} if shown is not None else set()
    missing = [_noun(o) for o in text_spec.objects if o.color not in colors]
    return " and ".join(missing) if missing else "nothing"


def question(shown: Spec, rng: np.random.Generator) -> tuple[str, str]:
    """A random question about ``shown`` and its answer."""
    kind = int(rng.integers(5))
    i = int(rng.integers(len(shown.objects)))
    obj = shown.objects[i]
    if kind == 0:
        return "how many objects", ("one", "two")[len(shown.objects) - 1]
    if kind == 1:
        return "what colors", " and ".join(o.color for o in shown.objects)
    if kind == 2:
        return f"shape of the {obj.color} object", _noun(obj).split()[-1]
    if kind == 3:
        return f"size of the {obj.color} object", obj.size
    where = _place(obj, shown.position) if len(shown.objects) == 1 else _relation_phrase(shown, i)
    return f"where is the {obj.color} object", where


# ---------------------------------------------------------------------------------------------------------
# Images: clean renders and the toy model's own trajectories


@dataclass
class Trajectory:
    """One episode of the toy model at the identity policy: its query, previews and progress at the refinement
    points, and what its final image shows."""

    query: str
    previews: list[np.ndarray]
    progress: list[float]
    shown: Spec | None


def trajectories(n: int, split: str, seed: int, num_envs: int = 64) -> list[Trajectory]:
    """``n`` toy-model episodes (identity policy) on ``split`` queries of every style, env seeds from ``seed``."""
    from promptloop_env.toy.grammar import sample_queries
    from promptloop_env.vector import PromptLoopVectorEnv

    styles = ("caption", "model", "user")
    queries = [q for k, style in enumerate(styles) for q in sample_queries(n, split, seed=seed + k, style=style)]
    order = np.random.default_rng(seed).permutation(len(queries))[:n]
    queries = [queries[i] for i in order]
    num_envs = min(num_envs, n)
    env = PromptLoopVectorEnv(num_envs=num_envs)
    out: list[Trajectory] = []
    for start in range(0, n, num_envs):
        batch = queries[start : start + num_envs]
        batch = [batch[i % len(batch)] for i in range(num_envs)]  # the last batch padded; the padding is dropped
        obs, _ = env.reset(seed=seed + start, options={"query": batch})
        previews, progress = [obs["preview"]], [obs["progress"][:, 0]]
        while True:
            obs, _, terminated, _, info = env.step(list(obs["query"]))
            if terminated.all():
                break
            previews.append(obs["preview"])
            progress.append(obs["progress"][:, 0])
        for i in range(min(num_envs, n - start)):
            out.append(
                Trajectory(
                    batch[i], [p[i] for p in previews], [float(p[i]) for p in progress], seen_spec(info["image"][i])
                )
            )
    env.close()
    return out


def _scene(rng: np.random.Generator, split: str) -> Scene:
    while True:
        scene = random_scene(rng)
        if split_of(spec_of(scene)) == split:
            return scene


def _text(scene: Scene, rng: np.random.Generator) -> str:
    """A text about ``scene`` in any style, with optional attributes dropped."""
    style = int(rng.integers(3))
    drop = float(rng.uniform(0.0, 0.5))
    if style == 0:
        return caption(scene, rng, drop=drop)
    if style == 1:
        return user_query(scene, rng, drop=drop)
    return paraphrase(parse(caption(scene, rng, drop=drop)), rng)


def example(
    rng: np.random.Generator,
    bank: list[Trajectory],
    split: str,
    skill: str | None = None,
    source: str | None = None,
) -> tuple[dict, str]:
    """One ``(observation, answer)`` for ``skill`` (random when None) from ``source``: ``"render"`` (a clean
    render of a ``split`` scene), ``"trajectory"`` (a preview from ``bank``) or None (either, half and
    half). The observation's ``query`` holds the whole user message."""
    skill = skill or SKILLS[int(rng.choice(len(SKILLS), p=SKILL_WEIGHTS))]
    source = source or ("render" if rng.random() < 0.5 or not bank else "trajectory")
    while True:
        if source == "render":  # sometimes a two-object scene with an object left out
            scene = _scene(rng, split)
            hidden = (int(rng.integers(2)),) if len(scene.objects) == 2 and rng.random() < 0.3 else ()
            image = render(scene, rng=rng, hidden=hidden)
            shown = seen_spec(image) if hidden else spec_of(scene)
            text, progress = _text(scene, rng), 0.0
            if skill == "rewrite":  # shown with another scene's render: the text, not the image, is rewritten
                image = render(_scene(rng, split), rng=rng)
        else:  # a preview of the toy model's own trajectory, labelled by what its final image shows
            trajectory = bank[int(rng.integers(len(bank)))]
            k = int(rng.integers(len(trajectory.previews)))
            image, progress = trajectory.previews[k], trajectory.progress[k]
            shown, text = trajectory.shown, trajectory.query
        if shown is not None or skill in ("lack", "rewrite"):
            break
    if skill == "describe":
        message, answer = "describe the image", describe(shown)
    elif skill == "question":
        message, answer = question(shown, rng)
    elif skill == "lack":
        message, answer = f"text: {text}\nwhat does the image lack", lack_answer(parse(text), shown)
    else:
        message, answer = INSTRUCTION.format(query=text), paraphrase(parse(text), rng)
    return {"preview": image, "query": message, "prompt": "", "progress": progress}, answer


def supervised_turns(agent, batch: list[tuple[dict, str]]) -> list[Turn]:
    """Turns whose response is the answer followed by the end-of-turn token."""
    contexts, _ = agent._context_ids([o for o, _ in batch])
    eos = agent.tokenizer.eos_token_id
    turns = []
    for (observation, answer), context in zip(batch, contexts, strict=True):
        ids = agent.tokenizer(answer, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
        response = torch.cat([ids, torch.tensor([eos])])
        turns.append(Turn(observation["preview"], context, response, torch.zeros(len(response)), answer, answer, False))
    return turns


# ---------------------------------------------------------------------------------------------------------
# Held-out accuracy per skill


def _same_meaning(a: str, b: Spec) -> bool:
    try:
        spec = parse(a)
    except ParseError:
        return False
    return spec == b or (len(b.objects) == 2 and spec == swapped(b))


def evaluate(agent, bank: list[Trajectory], n: int, seed: int) -> dict[str, float]:
    """Greedy held-out accuracy per skill and image source (test-split scenes, held-out trajectories).

    describe/question/lack: the exact answer; rewrite: the answer parses to the text's meaning (either pair
    order)."""
    rng = np.random.default_rng(seed)
    results: dict[str, float] = {}
    for skill in SKILLS:
        for source in ("render", "trajectory"):
            items = [example(rng, bank, "test", skill, source) for _ in range(n)]
            correct = 0
            for start in range(0, n, 50):
                chunk = items[start : start + 50]
                turns = agent.generate([o for o, _ in chunk], greedy=True)
                for (observation, answer), turn in zip(chunk, turns, strict=True):
                    text = turn.text.strip()
                    if skill == "rewrite":
                        query = observation["query"].split("\n")[0].removeprefix("text: ")
                        correct += _same_meaning(text, parse(query))
                    else:
                        correct += text == answer
            results[f"{skill} ({source})"] = correct / n
    return results


# ---------------------------------------------------------------------------------------------------------


def _stage(agent, name: str, draw, steps: int, optimizer, schedule, config, heldout, log, start: float) -> None:
    """``steps`` supervised steps on batches of ``draw()``, held-out accuracy logged every ``eval_every``."""
    agent.model.train()
    losses: list[float] = []
    for step in range(1, steps + 1):
        batch = [draw() for _ in range(config.batch_size)]
        loss = -torch.cat(agent.score(supervised_turns(agent, batch)).logprobs).mean()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(agent.model.parameters(), 1.0)
        optimizer.step()
        if schedule is not None:
            schedule.step()
        losses.append(loss.item())
        if step % config.eval_every == 0 or step == steps:
            agent.model.eval()
            metrics = evaluate(agent, heldout, config.eval_n, seed=1234)
            agent.model.train()
            if not any(line.startswith("| stage |") for line in log):
                header = ["stage", "step", "loss", *metrics, "minutes"]
                log += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            cells = [name, str(step), f"{np.mean(losses[-50:]):.4f}", *(f"{v:.3f}" for v in metrics.values())]
            row = "| " + " | ".join(cells + [f"{(time.time() - start) / 60:.1f}"]) + " |"
            print(row, flush=True)
            log.append(row)
    agent.model.eval()


def main(argv: list[str] | None = None) -> None:
    defaults = PretrainConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, value in vars(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    config = PretrainConfig(**vars(parser.parse_args(argv)))
    if config.focus_schedule not in ("constant", "cosine"):
        parser.error(f"--focus-schedule {config.focus_schedule!r}: expected 'constant' or 'cosine'")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    start = time.time()
    heldout = trajectories(max(64, config.eval_n // 2), "test", seed=config.seed + 100_000)
    bank = trajectories(config.episodes, "train", seed=config.seed)
    if config.init_from:  # the first stage's weights from an earlier run: only the focus stage runs
        from ..mllm import MLLMAgent

        agent = MLLMAgent.from_pretrained(config.init_from)
    else:
        agent = build_toy_policy(config.seed, config.hidden_size, config.num_layers, extra_words=INSTRUCTION_WORDS)
    bank_minutes = (time.time() - start) / 60
    agent.user_template = "{query}"
    params = sum(p.numel() for p in agent.model.parameters())
    command = "python -m agents.toy.pretrain " + " ".join(sys.argv[1:] if argv is None else argv)
    log = [
        "# Toy policy pretraining (generic skills)",
        "",
        f"Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC  ",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}  ",
        f"Command: `{command.strip()}`  ",
        f"Config: {config}",
        "",
        f"Qwen2VLForConditionalGeneration, {params / 1e6:.3f} M parameters, vocabulary {len(agent.tokenizer)}; "
        f"{len(bank)} train trajectories and {len(heldout)} held-out ones of the toy model "
        f"({bank_minutes:.1f} min). Held-out accuracy, greedy, {config.eval_n} items per cell; stage `skills`: "
        "the four skills; stage `focus`: rewrites in the plain caption form, mostly of pairs (see the module).",
        "",
    ]
    if config.init_from:
        log += [f"Stage `skills` skipped: its weights come from `{config.init_from}`.", ""]
    else:
        optimizer = torch.optim.AdamW(agent.model.parameters(), lr=config.lr, weight_decay=0.0)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=config.steps, pct_start=0.1)
        draw = lambda: example(rng, bank, "train")  # noqa: E731
        _stage(agent, "skills", draw, config.steps, optimizer, schedule, config, heldout, log, start)
    if config.focus_steps > 0:
        focus_rng = np.random.default_rng(config.seed + 1)  # the same focus stage with or without --init-from
        torch.manual_seed(config.seed + 1)
        optimizer = torch.optim.AdamW(agent.model.parameters(), lr=config.focus_lr, weight_decay=0.0)
        schedule = None
        if config.focus_schedule == "cosine":  # down to a tenth of focus_lr by the last step
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.focus_steps, config.focus_lr / 10)
        draw = lambda: focus_example(focus_rng, "train", config.focus_pairs, bank)  # noqa: E731
        _stage(agent, "focus", draw, config.focus_steps, optimizer, schedule, config, heldout, log, start)
    agent.user_template = INSTRUCTION
    with atomic_folder(config.out) as folder, quiet_loading():
        agent.save_pretrained(folder)
        (folder / "pretrain_log.md").write_text("\n".join(log) + "\n")
    print(f"saved the toy policy to {config.out}")


if __name__ == "__main__":
    main()
