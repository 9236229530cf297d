"""Learned rewards (ImageReward, HPSv2, PickScore, aesthetic, CLIPScore) on tiny models of the real architectures.

Each model is built from a small config in memory; where the checkpoint format is ours to read (ImageReward's
``.pt``, HPSv2's open_clip keys, the aesthetic MLP), a tiny checkpoint is written in the UPSTREAM key format with
``torch.save`` and loaded through our loader.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import (
    BertTokenizer,
    BlipTextConfig,
    BlipVisionConfig,
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPProcessor,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

from promptloop_env.rewards import (
    AestheticScore,
    CLIPScore,
    HPSv2,
    ImageReward,
    PickScore,
    as_reward,
    make_reward,
)
from promptloop_env.rewards import base as reward_base
from promptloop_env.rewards._learned import RatingHead
from promptloop_env.rewards.clip import convert_open_clip_state_dict, pad_to_square
from promptloop_env.rewards.imagereward import ImageRewardModel, blip_tokenizer, convert_imagereward_state_dict
from promptloop_env.testing import TINY_WORDS, build_clip_tokenizer

SIZE, WIDTH, EMBED = 32, 32, 16
QUERIES = ["a red circle", "a blue square on white", "a green cat", "a small yellow star"]


def _images(n: int = 4, seed: int = 0) -> np.ndarray:
    """Non-square, structured images (blocks of colour), so that resizing and cropping matter."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(n, 5, 6, 3), dtype=np.uint8)
    return np.repeat(np.repeat(blocks, 8, axis=1), 8, axis=2)  # [n, 40, 48, 3]


IMAGES = _images()


# ---------------------------------------------------------------------------------------------- tiny models ----
def _clip_tokenizer():
    return build_clip_tokenizer()


def _clip_processor():
    image_processor = CLIPImageProcessor(size={"shortest_edge": SIZE}, crop_size={"height": SIZE, "width": SIZE})
    return CLIPProcessor(image_processor=image_processor, tokenizer=_clip_tokenizer())


def _clip_config(tokenizer) -> CLIPConfig:
    return CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=WIDTH,
            intermediate_size=2 * WIDTH,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(
            hidden_size=WIDTH,
            intermediate_size=2 * WIDTH,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=SIZE,
            patch_size=8,
        ),
        projection_dim=EMBED,
    )


def _tiny_clip(seed: int = 0) -> CLIPModel:
    torch.manual_seed(seed)
    return CLIPModel(_clip_config(_clip_tokenizer())).eval()


def _tiny_bert_tokenizer(folder):
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(TINY_WORDS)]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    return blip_tokenizer_from(BertTokenizer(str(folder / "vocab.txt")), folder)


def blip_tokenizer_from(tokenizer, folder):
    tokenizer.save_pretrained(folder)
    return blip_tokenizer(folder)  # adds [DEC] and [ENC] as BLIP does


MED_CONFIG = {
    "architectures": ["BertModel"],
    "hidden_act": "gelu",
    "hidden_size": WIDTH,
    "intermediate_size": 64,
    "layer_norm_eps": 1e-12,
    "num_attention_heads": 2,
    "num_hidden_layers": 2,
    "pad_token_id": 0,
    "add_cross_attention": True,
}


def _tiny_imagereward(tokenizer, seed: int = 0) -> ImageRewardModel:
    torch.manual_seed(seed)
    vision = BlipVisionConfig(
        hidden_size=WIDTH,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=1,
        image_size=SIZE,
        patch_size=8,
        layer_norm_eps=1e-6,
    )
    text = BlipTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=WIDTH,
        encoder_hidden_size=WIDTH,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=40,
        bos_token_id=None,
        sep_token_id=None,
        is_decoder=True,
    )
    model = ImageRewardModel(vision, text)
    with torch.no_grad():  # BLIP's initialisation of the ViT is tiny; spread it so that images matter
        for p in model.vision_model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def _to_upstream_imagereward(model: ImageRewardModel) -> dict[str, torch.Tensor]:
    """Our module's weights under ImageReward.pt's keys (BLIP's timm-style ViT, med.py BERT, ``mlp.layers``)."""
    renames = {
        "embeddings.class_embedding": "cls_token",
        "embeddings.position_embedding": "pos_embed",
        "embeddings.patch_embedding.weight": "patch_embed.proj.weight",
        "embeddings.patch_embedding.bias": "patch_embed.proj.bias",
        "post_layernorm.weight": "norm.weight",
        "post_layernorm.bias": "norm.bias",
    }
    block = {
        "layer_norm1": "norm1",
        "layer_norm2": "norm2",
        "self_attn.qkv": "attn.qkv",
        "self_attn.projection": "attn.proj",
        "mlp.fc1": "mlp.fc1",
        "mlp.fc2": "mlp.fc2",
    }
    out = {}
    for key, value in model.state_dict().items():
        value = value.clone()
        if key.startswith("vision_model."):
            rest = key.removeprefix("vision_model.")
            if rest in renames:
                out["blip.visual_encoder." + renames[rest]] = value
            else:
                _, _, i, name = rest.split(".", 3)
                module, param = name.rsplit(".", 1)
                out[f"blip.visual_encoder.blocks.{i}.{block[module]}.{param}"] = value
        elif key.startswith("text_encoder."):
            out["blip." + key] = value
        else:
            out["mlp." + key.removeprefix("head.")] = value
    # upstream keys the score does not use
    out["blip.text_encoder.embeddings.position_ids"] = torch.arange(40)[None]
    out["blip.vision_proj.weight"] = torch.zeros(8, WIDTH)
    out["blip.text_proj.weight"] = torch.zeros(8, WIDTH)
    return out


@pytest.fixture(scope="module")
def imagereward_folder(tmp_path_factory):
    """A folder like THUDM/ImageReward: ImageReward.pt (upstream keys) + med_config.json (+ a tokenizer)."""
    folder = tmp_path_factory.mktemp("imagereward")
    tokenizer = _tiny_bert_tokenizer(folder)
    model = _tiny_imagereward(tokenizer)
    torch.save(_to_upstream_imagereward(model), folder / "ImageReward.pt")
    (folder / "med_config.json").write_text(json.dumps(dict(MED_CONFIG, vocab_size=len(tokenizer))))
    return folder, model, tokenizer


def _open_clip_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A tiny open_clip ViT CLIP state dict (HPSv2's key format), random but well-conditioned."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=0.1):
        return scale * torch.randn(*shape, generator=g)

    def norm(prefix, sd):
        sd[prefix + ".weight"] = 1 + rand(WIDTH)
        sd[prefix + ".bias"] = rand(WIDTH)

    def blocks(prefix, sd):
        for i in range(2):
            p = f"{prefix}transformer.resblocks.{i}."
            norm(p + "ln_1", sd)
            norm(p + "ln_2", sd)
            sd[p + "attn.in_proj_weight"] = rand(3 * WIDTH, WIDTH, scale=0.3)
            sd[p + "attn.in_proj_bias"] = rand(3 * WIDTH)
            sd[p + "attn.out_proj.weight"] = rand(WIDTH, WIDTH, scale=0.3)
            sd[p + "attn.out_proj.bias"] = rand(WIDTH)
            sd[p + "mlp.c_fc.weight"] = rand(2 * WIDTH, WIDTH, scale=0.3)
            sd[p + "mlp.c_fc.bias"] = rand(2 * WIDTH)
            sd[p + "mlp.c_proj.weight"] = rand(WIDTH, 2 * WIDTH, scale=0.3)
            sd[p + "mlp.c_proj.bias"] = rand(WIDTH)

    sd: dict[str, torch.Tensor] = {}
    grid = SIZE // 8
    sd["visual.class_embedding"] = rand(WIDTH)
    sd["visual.positional_embedding"] = rand(grid * grid + 1, WIDTH)
    sd["visual.conv1.weight"] = rand(WIDTH, 3, 8, 8)
    norm("visual.ln_pre", sd)
    blocks("visual.", sd)
    norm("visual.ln_post", sd)
    sd["visual.proj"] = rand(WIDTH, EMBED, scale=0.3)
    sd["token_embedding.weight"] = rand(len(_clip_tokenizer()), WIDTH, scale=0.5)
    sd["positional_embedding"] = rand(77, WIDTH)
    blocks("", sd)
    norm("ln_final", sd)
    sd["text_projection"] = rand(WIDTH, EMBED, scale=0.3)
    sd["logit_scale"] = torch.tensor(math.log(100.0))
    sd["attn_mask"] = torch.full((77, 77), float("-inf")).triu(1)
    return sd


def _open_clip_reference(sd, pixels: torch.Tensor, ids: torch.Tensor, heads: int = 2) -> torch.Tensor:
    """open_clip's forward, written from its VisionTransformer/TextTransformer: cosine of the two embeddings."""

    def layer_norm(x, p):
        return F.layer_norm(x, (WIDTH,), sd[p + ".weight"], sd[p + ".bias"])

    def resblocks(x, prefix, mask=None):
        for i in range(2):
            p = f"{prefix}transformer.resblocks.{i}."
            attn = torch.nn.MultiheadAttention(WIDTH, heads, batch_first=True)
            attn.load_state_dict({k.removeprefix(p + "attn."): v for k, v in sd.items() if k.startswith(p + "attn.")})
            h = layer_norm(x, p + "ln_1")
            x = x + attn(h, h, h, need_weights=False, attn_mask=mask)[0]
            h = F.gelu(F.linear(layer_norm(x, p + "ln_2"), sd[p + "mlp.c_fc.weight"], sd[p + "mlp.c_fc.bias"]))
            x = x + F.linear(h, sd[p + "mlp.c_proj.weight"], sd[p + "mlp.c_proj.bias"])
        return x

    x = F.conv2d(pixels, sd["visual.conv1.weight"], stride=8).flatten(2).transpose(1, 2)
    x = torch.cat([sd["visual.class_embedding"].expand(len(x), 1, WIDTH), x], dim=1) + sd["visual.positional_embedding"]
    x = resblocks(layer_norm(x, "visual.ln_pre"), "visual.")
    image = layer_norm(x[:, 0], "visual.ln_post") @ sd["visual.proj"]
    t = sd["token_embedding.weight"][ids] + sd["positional_embedding"]
    t = layer_norm(resblocks(t, "", mask=sd["attn_mask"]), "ln_final")
    text = t[torch.arange(len(ids)), ids.argmax(-1)] @ sd["text_projection"]
    return (F.normalize(image, dim=-1) * F.normalize(text, dim=-1)).sum(-1)


@pytest.fixture(scope="module")
def hpsv2_folder(tmp_path_factory):
    """A folder holding HPS_v2.1_compressed.pt in HPSv2's format ({"state_dict": open_clip keys}) + a tokenizer."""
    folder = tmp_path_factory.mktemp("hpsv2")
    sd = _open_clip_state_dict()
    torch.save({"state_dict": sd}, folder / "HPS_v2.1_compressed.pt")
    _clip_tokenizer().save_pretrained(folder / "tokenizer")
    return folder, sd


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    """A tiny CLIP (model + processor) saved as from_pretrained reads it."""
    folder = tmp_path_factory.mktemp("clip")
    _tiny_clip().save_pretrained(folder)
    _clip_processor().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def aesthetic_folder(tmp_path_factory, clip_folder):
    """aesthetic-model.pth (the predictor's ``layers.N`` keys) + a tiny CLIP vision tower with projection."""
    folder = tmp_path_factory.mktemp("aesthetic")
    torch.manual_seed(1)
    head = RatingHead(EMBED)
    state = {k: v + 0.1 * torch.randn_like(v) for k, v in head.state_dict().items()}
    torch.save(state, folder / "aesthetic-model.pth")
    vision = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=WIDTH,
            intermediate_size=2 * WIDTH,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=SIZE,
            patch_size=8,
            projection_dim=EMBED,
        )
    )
    vision.save_pretrained(folder / "clip")
    _clip_processor().image_processor.save_pretrained(folder / "clip")
    return folder, state


def _build(name, folders):
    ir, hps, clip, aes = folders
    if name == "imagereward":
        return ImageReward.from_pretrained(ir[0], device="cpu")
    if name == "hpsv2":
        return HPSv2.from_pretrained(hps[0], tokenizer=hps[0] / "tokenizer", vision_heads=2, text_heads=2, device="cpu")
    if name == "pickscore":
        return PickScore.from_pretrained(clip, device="cpu")
    if name == "clipscore":
        return CLIPScore.from_pretrained(clip, device="cpu")
    return AestheticScore.from_pretrained(aes[0], clip=aes[0] / "clip", device="cpu")


@pytest.fixture(scope="module")
def folders(imagereward_folder, hpsv2_folder, clip_folder, aesthetic_folder):
    return imagereward_folder, hpsv2_folder, clip_folder, aesthetic_folder


NAMES = ["imagereward", "hpsv2", "pickscore", "clipscore", "aesthetic"]


# ---------------------------------------------------------------------------------------------------- tests ----
@pytest.mark.parametrize("name", NAMES)
def test_learned_reward_contract(name, folders):
    """Shape [N], finite, deterministic, batch-invariant, and it responds to the image (and query if it reads it)."""
    reward = _build(name, folders)
    assert reward.name == name
    modules = [getattr(reward, a) for a in ("model", "clip", "head") if hasattr(reward, a)]
    assert modules and not any(m.training for module in modules for m in module.modules())  # eval: no dropout
    checked = as_reward(reward)  # what the env does with an instance: the registry's output checks
    assert checked.name == name
    scores = checked(IMAGES, QUERIES)
    assert scores.shape == (4,) and scores.dtype == np.float64 and np.isfinite(scores).all()
    np.testing.assert_array_equal(scores, checked(IMAGES, QUERIES))
    reward.batch_size = 1
    np.testing.assert_allclose(reward(IMAGES, QUERIES), scores, rtol=1e-4, atol=1e-5)
    reward.batch_size = 3
    np.testing.assert_allclose(reward(IMAGES, QUERIES), scores, rtol=1e-4, atol=1e-5)
    same_query = reward(IMAGES, [QUERIES[0]] * 4)
    assert np.ptp(same_query) > 1e-4, "different images, same query: scores must differ"
    same_image = reward(np.repeat(IMAGES[:1], 4, axis=0), QUERIES)
    if name == "aesthetic":
        np.testing.assert_allclose(same_image, same_image[0], rtol=1e-5)  # the predictor ignores the query
    else:
        assert np.ptp(same_image) > 1e-4, "same image, different queries: scores must differ"
    assert reward(IMAGES[:0], []).shape == (0,)


def test_clipscore_is_w_times_clipped_cosine_of_clip(clip_folder):
    reward = CLIPScore.from_pretrained(clip_folder, device="cpu")
    scores = reward(IMAGES, QUERIES)
    assert ((scores >= 0) & (scores <= 2.5)).all()
    model, processor = CLIPModel.from_pretrained(clip_folder).eval(), CLIPProcessor.from_pretrained(clip_folder)
    with torch.no_grad():
        out = model(**processor(text=QUERIES, images=list(IMAGES), return_tensors="pt", padding=True))
        cos = (out.logits_per_image.diag() / model.logit_scale.exp()).numpy()
    np.testing.assert_allclose(scores, 2.5 * np.maximum(cos, 0), rtol=1e-4, atol=1e-6)
    assert (cos < 0).any() and (scores == 0).any(), "the tiny model should give some negative cosines, clipped to 0"
    np.testing.assert_allclose(CLIPScore.from_pretrained(clip_folder, w=100.0)(IMAGES, QUERIES), 40 * scores, rtol=1e-4)


def test_pickscore_is_clip_logits(clip_folder):
    scores = PickScore.from_pretrained(clip_folder, device="cpu")(IMAGES, QUERIES)
    model, processor = CLIPModel.from_pretrained(clip_folder).eval(), CLIPProcessor.from_pretrained(clip_folder)
    with torch.no_grad():
        out = model(**processor(text=QUERIES, images=list(IMAGES), return_tensors="pt", padding=True))
    np.testing.assert_allclose(scores, out.logits_per_image.diag().numpy(), rtol=1e-4, atol=1e-5)


def test_hpsv2_open_clip_checkpoint_reproduces_open_clip(hpsv2_folder):
    """The converted CLIPModel scores as open_clip's forward on the same upstream weights."""
    folder, sd = hpsv2_folder
    reward = HPSv2.from_pretrained(folder, tokenizer=folder / "tokenizer", vision_heads=2, text_heads=2, device="cpu")
    images = _images(4, seed=3)
    scores = reward(images, QUERIES)
    pixels = reward.processor(images=list(pad_to_square(images, SIZE)), return_tensors="pt")["pixel_values"]
    tok = reward.tokenizer
    ids = torch.zeros(4, 77, dtype=torch.long)  # open_clip pads with 0 and pools at the largest id (end of text)
    for i, q in enumerate(QUERIES):
        row = tok(q)["input_ids"]
        ids[i, : len(row)] = torch.tensor(row)
    with torch.no_grad():
        expected = _open_clip_reference(sd, pixels, ids).numpy()
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-5)
    assert (np.abs(scores) <= 1 + 1e-6).all()


def test_hpsv2_pads_to_a_square_like_open_clip():
    wide = np.zeros((1, 20, 40, 3), dtype=np.uint8)
    wide[..., 0] = 200
    square = pad_to_square(wide, 32)[0]
    assert square.shape == (32, 32, 3)
    assert (square[:8] == 0).all() and (square[24:] == 0).all()  # black bars above and below
    assert (square[9:23, :, 0] == 200).all()


def test_open_clip_converter_rejects_other_architectures():
    sd = _open_clip_state_dict()
    sd["visual.transformer.resblocks.0.ls_1.gamma"] = torch.ones(WIDTH)  # LayerScale: not a ViT-H-14 key
    with pytest.raises(KeyError, match="ls_1"):
        convert_open_clip_state_dict(sd)


def test_imagereward_checkpoint_round_trip(imagereward_folder):
    """ImageReward.pt in upstream keys -> our loader -> the same scores as the module it was made from."""
    folder, model, tokenizer = imagereward_folder
    loaded = ImageReward.from_pretrained(folder, device="cpu")
    direct = ImageReward(model, tokenizer, device="cpu")
    np.testing.assert_allclose(loaded(IMAGES, QUERIES), direct(IMAGES, QUERIES), rtol=1e-5, atol=1e-6)
    from_file = ImageReward.from_pretrained(folder / "ImageReward.pt", device="cpu")
    np.testing.assert_array_equal(from_file(IMAGES, QUERIES), loaded(IMAGES, QUERIES))
    assert loaded.model.vision_model.config.layer_norm_eps == 1e-6  # BLIP's ViT, not transformers' default
    assert loaded.tokenizer.convert_tokens_to_ids(["[DEC]", "[ENC]"]) == [len(tokenizer) - 2, len(tokenizer) - 1]
    state = torch.load(folder / "ImageReward.pt", weights_only=True)
    with pytest.raises(KeyError, match="unexpected keys"):
        convert_imagereward_state_dict({**state, "blip.something_else.weight": torch.zeros(1)})


def test_aesthetic_checkpoint_is_the_linear_mlp_on_normalised_clip_embeddings(aesthetic_folder):
    folder, state = aesthetic_folder
    reward = AestheticScore.from_pretrained(folder, clip=folder / "clip", device="cpu")
    scores = reward(IMAGES, QUERIES)
    vision = CLIPVisionModelWithProjection.from_pretrained(folder / "clip").eval()
    pixels = CLIPImageProcessor.from_pretrained(folder / "clip")(images=list(IMAGES), return_tensors="pt")
    with torch.no_grad():
        x = F.normalize(vision(**pixels).image_embeds, dim=-1)
        for i in (0, 2, 4, 6, 7):  # linear layers, no activation between them (upstream's ReLUs are commented out)
            x = x @ state[f"layers.{i}.weight"].T + state[f"layers.{i}.bias"]
    np.testing.assert_allclose(scores, x.squeeze(-1).numpy(), rtol=1e-4, atol=1e-5)


def test_make_reward_by_name_with_options_and_weighted_sum(folders, monkeypatch):
    ir_folder = folders[0][0]
    clip = folders[2]
    reward = make_reward("imagereward", repo_or_path=ir_folder, device="cpu")
    np.testing.assert_allclose(reward(IMAGES, QUERIES), _build("imagereward", folders)(IMAGES, QUERIES), rtol=1e-6)
    monkeypatch.setitem(reward_base._REGISTRY, "imagereward", lambda: ImageReward.from_pretrained(ir_folder))
    monkeypatch.setitem(reward_base._REGISTRY, "clipscore", lambda: CLIPScore.from_pretrained(clip))
    total = make_reward({"imagereward": 1.0, "clipscore": 0.5})
    parts = total.components(IMAGES, QUERIES)
    assert set(parts) == {"imagereward", "clipscore"}
    np.testing.assert_allclose(total(IMAGES, QUERIES), parts["imagereward"] + 0.5 * parts["clipscore"])
    with pytest.raises(ValueError, match="does not take the options"):
        make_reward("imagereward", colour="red")


def test_a_learned_reward_returning_nan_is_named(imagereward_folder):
    folder, _, _ = imagereward_folder
    reward = ImageReward.from_pretrained(folder, device="cpu")
    with torch.no_grad():
        reward.model.head.layers[7].bias.fill_(float("nan"))
    with pytest.raises(ValueError, match="'imagereward' returned a non-finite score"):
        as_reward(reward)(IMAGES, QUERIES)


def test_bad_inputs_are_explained(clip_folder):
    reward = CLIPScore.from_pretrained(clip_folder, device="cpu")
    with pytest.raises(TypeError, match="uint8"):
        reward(IMAGES.astype(np.float32), QUERIES)
    with pytest.raises(ValueError, match="one query string per image"):
        reward(IMAGES, QUERIES[:2])
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
        reward(IMAGES[0], QUERIES)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("imagereward", ["THUDM/ImageReward", "ImageReward.pt", "hf download THUDM/ImageReward ImageReward.pt"]),
        ("hpsv2", ["xswu/HPSv2", "HPS_v2.1_compressed.pt", "hf download xswu/HPSv2"]),
        ("aesthetic", ["trl-lib/ddpo-aesthetic-predictor", "aesthetic-model.pth", "hf download"]),
        ("pickscore", ["yuvalkirstain/PickScore_v1", "hf download yuvalkirstain/PickScore_v1"]),
        ("clipscore", ["openai/clip-vit-large-patch14", "hf download openai/clip-vit-large-patch14"]),
    ],
)
def test_missing_model_offline_says_how_to_get_it(name, expected, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        make_reward(name)
    for text in [f"Reward {name!r}", *expected, "HF_HUB_OFFLINE"]:
        assert text in str(info.value)


def test_missing_package_names_the_extra_and_the_model(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(ImportError, match=r"promptloop\[rewards\]") as info:
        make_reward("imagereward")
    assert "THUDM/ImageReward" in str(info.value) and "huggingface_hub" in str(info.value)


def test_importing_the_package_imports_no_model_library():
    code = (
        "import sys, promptloop_env, promptloop_env.rewards; "
        "print(sorted({'transformers', 'huggingface_hub'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_checkpoints_are_read_without_running_code_and_paths_are_checked(tmp_path):
    import argparse

    from promptloop_env.rewards._learned import load_state_dict

    torch.save({"state_dict": {"w": torch.zeros(2)}, "args": argparse.Namespace(lr=1.0)}, tmp_path / "ckpt.pt")
    with pytest.raises(ValueError, match="weights_only=True"):
        load_state_dict(tmp_path / "ckpt.pt")
    torch.save({"state_dict": {"module.w": torch.ones(2)}, "epoch": 3}, tmp_path / "plain.pt")
    assert list(load_state_dict(tmp_path / "plain.pt")) == ["w"]
    with pytest.raises(FileNotFoundError, match="no file or folder at"):
        make_reward("imagereward", repo_or_path=str(tmp_path / "missing" / "folder"))
    with pytest.raises(FileNotFoundError, match="no 'ImageReward.pt' in the folder"):
        ImageReward.from_pretrained(tmp_path)


def test_env_takes_a_learned_reward_and_scores_the_final_image_against_the_query(pipeline, clip_folder):
    from promptloop_env import PromptLoopEnv

    reward = CLIPScore.from_pretrained(clip_folder, device="cpu")
    env = PromptLoopEnv(pipeline=pipeline, reward=reward, num_inference_steps=4, num_refinements=1)
    obs, _ = env.reset(seed=0, options={"query": "a red circle"})
    _, score, terminated, _, info = env.step("a bright red circle on white")
    assert terminated and set(info["reward_components"]) == {"clipscore"}
    assert score == pytest.approx(float(reward(info["image"][None], ["a red circle"])[0]))
