"""The paper's policy size on a GPU: generation speed, a training step, and the reference policy's memory.

    python benchmarks/agent_gpu.py --out benchmarks/results/agent_gpu.md     # needs a CUDA GPU (~2 minutes)
    python benchmarks/agent_gpu.py --small --device cpu --out /tmp/x.md       # the same code on a tiny config

A ``Qwen2_5_VLForConditionalGeneration`` with the architecture of Qwen2.5-VL-3B-Instruct (built from its
config, random bf16 weights: nothing is downloaded; speed and memory do not depend on the weights' values),
a word-level tokenizer of the same vocabulary size, LoRA r = 16 on the language model, and a batch of 8
PromptLoop observations with 448 x 448 previews (256 image tokens each). Measured, as medians of 3 after a
warm-up: batched sampling of 64 new tokens (``MLLMAgent.generate``), the reference pass with the adapter
disabled, and a training step (scoring with gradients and backward); then the peak GPU memory of holding the
reference as the adapter-disabled model vs as a separate copy of the base model; last, the training step again
with gradient checkpointing (``MLLMAgent.enable_gradient_checkpointing``).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import numpy as np
import report  # benchmarks/report.py, next to this script
import torch

from agents.mllm import MLLMAgent
from agents.tiny import build_chat_tokenizer


def qwen25_vl_3b(tokenizer, small: bool):
    from transformers import Qwen2_5_VLConfig

    ids = tokenizer.convert_tokens_to_ids
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=2048,
        intermediate_size=11008,
        num_hidden_layers=36,
        num_attention_heads=16,
        num_key_value_heads=2,
        max_position_embeddings=128000,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]},
        tie_word_embeddings=True,
        bos_token_id=ids("<|im_start|>"),
        eos_token_id=ids("<|im_end|>"),
        pad_token_id=ids("<|endoftext|>"),
    )
    vision = dict(
        depth=32,
        hidden_act="silu",
        hidden_size=1280,
        intermediate_size=3420,
        num_heads=16,
        in_channels=3,
        out_hidden_size=2048,
        patch_size=14,
        spatial_merge_size=2,
        window_size=112,
        fullatt_block_indexes=[7, 15, 23, 31],
        temporal_patch_size=2,
    )
    if small:
        text.update(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                                                            "mrope_section": [4, 6, 6]})  # fmt: skip
        vision.update(depth=2, hidden_size=64, intermediate_size=128, num_heads=2, out_hidden_size=128,
                      fullatt_block_indexes=[1])  # fmt: skip
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=True,
    )


def timed(fn, device, repeats: int = 3) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def gib(n: int) -> float:
    return n / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="a tiny config (to check the script on a CPU)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--out", default="benchmarks/results/agent_gpu.md")
    args = parser.parse_args()
    from transformers import Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32
    start = time.perf_counter()
    # Qwen's vocabulary has 151,936 entries; a word list of that size gives the lm_head its real cost.
    words = [f"w{i}" for i in range((151_936 - 200) // 2)] if not args.small else ["a", "red", "circle"]
    tokenizer = build_chat_tokenizer(words)
    config = qwen25_vl_3b(tokenizer, args.small)
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype).eval()
    params = sum(p.numel() for p in model.parameters())
    side = 448 if not args.small else 56
    image_processor = Qwen2VLImageProcessorPil(patch_size=14, merge_size=2, temporal_patch_size=2,
                                               min_pixels=side * side, max_pixels=side * side)  # fmt: skip
    agent = MLLMAgent(model, tokenizer=tokenizer, image_processor=image_processor, max_new_tokens=args.new_tokens,
                      name="Qwen2.5-VL-3B architecture (random weights)")  # fmt: skip
    # Never end early: the measured answer length is exactly max_new_tokens.
    agent.eos_token_ids = {len(tokenizer) + 10}
    agent.add_lora(r=16, alpha=32)
    lora = sum(p.numel() for p in agent.trainable_parameters())
    build_seconds = time.perf_counter() - start
    rng = np.random.default_rng(0)
    obs = {
        "preview": rng.integers(0, 256, (args.batch, side, side, 3), dtype=np.uint8),
        "query": ("a photo of an astronaut riding a horse on the moon, detailed",) * args.batch,
        "prompt": ("an astronaut riding a horse on the moon",) * args.batch,
        "progress": np.full((args.batch, 1), 0.3),
    }
    turns = agent.generate(obs)
    context = len(turns[0].context_ids)

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    generate_s = timed(lambda: agent.generate(obs), device)
    gen_peak = torch.cuda.max_memory_allocated() if cuda else 0

    def reference() -> None:
        agent.reference(turns)

    reference_s = timed(reference, device)

    def step() -> None:
        loss = -torch.cat(agent.score(turns).logprobs).float().mean()
        loss.backward()
        for p in agent.trainable_parameters():
            p.grad = None

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    step_s = timed(step, device)
    step_peak = torch.cuda.max_memory_allocated() if cuda else 0

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    held_adapter = torch.cuda.memory_allocated() if cuda else 0
    reference()
    peak_adapter = torch.cuda.max_memory_allocated() if cuda else 0
    with torch.no_grad():
        separate = copy.deepcopy(agent.model.get_base_model())  # what a second reference model would hold
    held_separate = torch.cuda.memory_allocated() if cuda else 0
    del separate

    # The same training step with gradient checkpointing (TrainConfig.gradient_checkpointing).
    agent.enable_gradient_checkpointing()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    step_checkpointed_s = timed(step, device)
    step_checkpointed_peak = torch.cuda.max_memory_allocated() if cuda else 0

    name = torch.cuda.get_device_name() if cuda else "the CPU"
    tokens = args.batch * args.new_tokens
    lines = report.header("The paper's policy size on a GPU")
    lines += [
        f"Run on {name}, {dtype}. Model: Qwen2.5-VL-3B-Instruct's architecture"
        f"{' (--small: a tiny config of it)' if args.small else ''} built from its config with random weights, "
        f"{params / 1e9:.2f} B parameters; LoRA r = 16 on the language model, {lora / 1e6:.1f} M trainable. "
        f"Batch of {args.batch} observations, {side} x {side} previews, {context} context tokens each "
        f"(model built in {build_seconds:.0f} s). Medians of 3 after a warm-up.",
        "",
        *report.table(
            ["measurement", "value"],
            [
                [
                    f"sampling {args.new_tokens} new tokens for {args.batch} turns",
                    f"{generate_s:.2f} s ({tokens / generate_s:.0f} tokens/s)",
                ],
                [f"reference log-probs (adapter disabled), {args.batch} turns", f"{reference_s * 1000:.0f} ms"],
                [
                    f"training step (score with gradients + backward), {args.batch} turns",
                    f"{step_s * 1000:.0f} ms",
                ],
                ["peak GPU memory while sampling", f"{gib(gen_peak):.1f} GiB"],
                ["peak GPU memory in a training step", f"{gib(step_peak):.1f} GiB"],
                ["memory held: policy with the reference as its disabled adapter", f"{gib(held_adapter):.2f} GiB"],
                ["memory held: policy + a separate reference copy", f"{gib(held_separate):.2f} GiB"],
                ["peak during a reference pass (adapter disabled)", f"{gib(peak_adapter):.2f} GiB"],
                [
                    f"training step with gradient checkpointing, {args.batch} turns",
                    f"{step_checkpointed_s * 1000:.0f} ms",
                ],
                [
                    "peak GPU memory in a training step with gradient checkpointing",
                    f"{gib(step_checkpointed_peak):.1f} GiB",
                ],
            ],
        ),
    ]
    report.write(args.out, lines)


if __name__ == "__main__":
    main()
