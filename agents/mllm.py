"""MLLMAgent: a Hugging Face image-text-to-text model as a policy whose actions are prompts.

The agent reads PromptLoop observations (preview image, query, prompt in force, progress), writes each one
as a chat (a system prompt and one user message holding the image and the text fields), samples the next
prompt with ``generate`` and keeps what the trainers need: the chat's token ids, the agent's own tokens and
their log-probs. :meth:`MLLMAgent.score` re-computes those log-probs (and the value head's values) with
gradients, and with ``reference=True`` the reference policy's, which is the same model with its LoRA adapter
disabled, so no second copy is held.

Families: Qwen2-VL and Qwen2.5-VL, LLaVA (inputs built here from the tokenizer and image processor, so no
torchvision is needed), and any other family whose processor takes ``text=`` and ``images=`` and whose config
names its ``image_token_id`` (Idefics3, SmolVLM, ...): the processor expands the image placeholders.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "DEFAULT_USER_TEMPLATE",
    "AgentError",
    "MLLMAgent",
    "Scores",
    "Turn",
    "parse_prompt",
    "split_observations",
]

#: The system message the agent sends unless given another (``system_prompt=``).
DEFAULT_SYSTEM_PROMPT = (
    "You refine the prompt of a text-to-image diffusion model while it samples. You see a preview of the image "
    "it is converging to, the user's query and the prompt in force. Write the prompt that will make the final "
    "image match the query best. Answer with the new prompt only, inside <prompt></prompt>."
)
#: The user message's text (after the preview image); fields: query, prompt, progress (percent), step.
DEFAULT_USER_TEMPLATE = "Query: {query}\nPrompt in force: {prompt}\nProgress: {progress}%"

_PROMPT_TAG = re.compile(r"<prompt>(.*?)(?:</prompt>|$)", re.DOTALL)
_QWEN_FAMILIES = ("qwen2_vl", "qwen2_5_vl")
#: Image inputs that processor-built families pass to the model.
_PIXEL_KEYS = ("pixel_values", "pixel_attention_mask", "image_sizes")


class AgentError(ValueError):
    """A model, processor or agent folder that cannot serve as a PromptLoop agent; the message says why."""


def parse_prompt(text: str) -> str | None:
    """The prompt an answer states: the text inside ``<prompt>...</prompt>`` when present (a missing closing
    tag is tolerated), else the first non-empty line; surrounding whitespace and quotes are stripped.
    ``None`` when nothing is left (the caller falls back to the prompt in force)."""
    match = _PROMPT_TAG.search(text)
    candidate = match.group(1) if match else next((line for line in text.splitlines() if line.strip()), "")
    candidate = " ".join(candidate.split()).strip("\"'` ")
    return candidate or None


def split_observations(observations: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One dict per observation, from a single env's observation, a vector env's batch, or a list of them."""
    if isinstance(observations, Mapping):
        if isinstance(observations.get("query"), str):
            return [dict(observations)]
        n = len(observations["query"])
        return [{key: observations[key][i] for key in observations} for i in range(n)]
    return [dict(o) for o in observations]


@dataclass
class Turn:
    """One decision of the agent, with everything needed to re-score it.

    ``context_ids``: the chat up to the start of the answer (image placeholder tokens expanded);
    ``response_ids``: the agent's own tokens (the end-of-turn token included when it was produced);
    ``logprobs``: their log-probabilities under the sampling policy (temperature applied, no top-p);
    ``text``: the decoded answer; ``prompt``: the action sent to the env; ``fallback``: the answer had no
    prompt, so the prompt in force was kept. The trainers fill ``ref_logprobs`` (the reference policy's) and
    ``values`` (the value head's, PPO) before an update.
    """

    image: np.ndarray
    context_ids: torch.Tensor
    response_ids: torch.Tensor
    logprobs: torch.Tensor
    text: str
    prompt: str
    fallback: bool
    ref_logprobs: torch.Tensor | None = None
    values: torch.Tensor | None = None


@dataclass
class Scores:
    """What :meth:`MLLMAgent.score` returns: one tensor per turn in each field (``None`` when not asked)."""

    logprobs: list[torch.Tensor]
    values: list[torch.Tensor] | None = None
    entropy: list[torch.Tensor] | None = None


class MLLMAgent:
    """A text-action policy around an image-text-to-text model and its tokenizer / image processor.

    Args:
        model: a ``transformers`` image-text-to-text model (e.g. ``Qwen2VLForConditionalGeneration``).
        processor: its processor (the tokenizer and image processor are taken from it); or give
            ``tokenizer`` and ``image_processor`` separately.
        system_prompt: the system message; ``None`` sends none (some small models have no system role).
        user_template: the user message's text, formatted with ``query``, ``prompt``, ``progress`` (0-100)
            and ``step``.
        temperature: sampling temperature of :meth:`act` and :meth:`generate`.
        top_p: nucleus sampling threshold of :meth:`act` and :meth:`generate` (1.0: off).
        max_new_tokens: the longest answer :meth:`act` and :meth:`generate` write, in tokens.
        name: how errors and logs refer to the model.
    """

    def __init__(
        self,
        model: Any,
        processor: Any = None,
        *,
        tokenizer: Any = None,
        image_processor: Any = None,
        system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
        user_template: str = DEFAULT_USER_TEMPLATE,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_new_tokens: int = 48,
        name: str | None = None,
    ) -> None:
        self.name = name or getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__
        tokenizer = tokenizer if tokenizer is not None else getattr(processor, "tokenizer", None)
        image_processor = (
            image_processor if image_processor is not None else getattr(processor, "image_processor", None)
        )
        if tokenizer is None:
            raise AgentError(f"{self.name}: no tokenizer; pass processor= or tokenizer=.")
        if image_processor is None:
            raise AgentError(
                f"{self.name}: no image processor, so the model cannot take the preview image; pass a processor "
                "with an image_processor, or image_processor=."
            )
        self.chat_template = getattr(tokenizer, "chat_template", None) or getattr(processor, "chat_template", None)
        if not self.chat_template:
            raise AgentError(
                f"{self.name}: the tokenizer/processor has no chat template; set tokenizer.chat_template "
                "(a Jinja template that renders {'type': 'image'} parts as the model's image placeholder)."
            )
        if not (temperature > 0 and 0 < top_p <= 1 and max_new_tokens >= 1):
            raise AgentError(
                f"Sampling settings out of range: temperature={temperature} (> 0), top_p={top_p} (in (0, 1]), "
                f"max_new_tokens={max_new_tokens} (>= 1)."
            )
        self.model = model
        self.processor = processor
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.system_prompt = system_prompt
        self.user_template = user_template
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.max_new_tokens = int(max_new_tokens)
        config = model.config
        self.family = getattr(config, "model_type", "")
        if self.family in _QWEN_FAMILIES:
            self._image_token_id = int(config.image_token_id)
        elif self.family == "llava":
            self._image_token_id = int(config.image_token_index)
        elif callable(processor) and getattr(config, "image_token_id", None) is not None:
            # Any other family (Idefics3, SmolVLM, ...): its own processor expands the image placeholders.
            self._image_token_id = int(config.image_token_id)
        else:
            raise AgentError(
                f"{self.name}: model type {self.family!r} needs its processor (one that takes text= and images=, "
                f"passed as processor=); MLLMAgent builds inputs itself only for {', '.join(_QWEN_FAMILIES)} "
                "and llava."
            )
        self._image_token = tokenizer.convert_ids_to_tokens(self._image_token_id)
        eos = getattr(model.generation_config, "eos_token_id", None)
        #: The checkpoint's own generation config, kept for reference only: the agent samples from its own,
        #: complete config (see :meth:`sampling_config`), so a checkpoint's repetition penalty, n-gram ban,
        #: top-k or min-p can never make the sampled tokens differ from the log-probs the trainers store.
        self.checkpoint_generation_config = model.generation_config
        model.generation_config = _neutral_generation_config(model.generation_config)
        eos = eos if eos is not None else tokenizer.eos_token_id
        self.eos_token_ids = {int(e) for e in (eos if isinstance(eos, list | tuple) else [eos]) if e is not None}
        pad = tokenizer.pad_token_id
        self.pad_token_id = int(pad if pad is not None else min(self.eos_token_ids))
        # The agent never writes image placeholders: they are masked out of its distribution, when sampling
        # and when scoring alike, so the two compute the same log-probs.
        self.suppressed_ids = sorted(
            {
                int(i)
                for key in (
                    "image_token_id",
                    "image_token_index",
                    "video_token_id",
                    "vision_start_token_id",
                    "vision_end_token_id",
                )
                if (i := getattr(config, key, None)) is not None
            }
        )
        self.value_head: nn.Linear | None = None
        self.has_lora = False
        #: The precision context the policy's own forward passes run in (generate, score): the trainer sets
        #: accelerate's ``autocast`` here, so mixed precision never reaches the diffusion model or the reward.
        self.autocast: Any = contextlib.nullcontext
        #: Whether the training forward pass recomputes activations (:meth:`enable_gradient_checkpointing`).
        self.gradient_checkpointing = False
        # The modules the training forward pass runs through (set by :meth:`distribute`; None: the agent's own).
        self._train_model: nn.Module | None = None
        self._train_value_head: nn.Module | None = None
        #: The base model's folder or id, written into agent.json when a LoRA agent is saved.
        self.base = self.name

    # ------------------------------------------------------------------ construction and saving
    @classmethod
    def from_pretrained(cls, path: str | Path, *, trainable: bool = False, **kwargs: Any) -> MLLMAgent:
        """Load an agent from a folder or a model id in the Hugging Face cache.

        A folder written by :meth:`save_pretrained` brings its ``agent.json`` settings (system prompt, user
        template, sampling) and, for a trained agent, its LoRA adapter and value head on top of the base model
        the folder names. Weights load from safetensors only; ``trust_remote_code`` stays off.
        ``kwargs`` override the saved settings.
        """
        from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

        path = Path(path) if Path(path).exists() else path
        settings: dict[str, Any] = {}
        if isinstance(path, Path) and (path / "agent.json").exists():
            settings = json.loads((path / "agent.json").read_text())
        adapter = isinstance(path, Path) and (path / "adapter_config.json").exists()
        base = settings.pop("base", None) if adapter else path
        settings_base = base
        if adapter and base is None:
            raise AgentError(f"{path}: has a LoRA adapter but agent.json names no 'base' model.")
        base = _resolve_base(base)
        load = dict(use_safetensors=True, trust_remote_code=False)
        try:
            model = AutoModelForImageTextToText.from_pretrained(base, **load)
            tokenizer = AutoTokenizer.from_pretrained(base, trust_remote_code=False)
            image_processor = AutoImageProcessor.from_pretrained(base, trust_remote_code=False, backend="pil")
        except OSError as error:
            raise AgentError(
                f"Could not load the agent model {base!r}: {error}. Give a folder written by save_pretrained / "
                "save_pretrained of transformers, or a model id present in your Hugging Face cache."
            ) from error
        settings.update(kwargs)
        lora = settings.pop("lora", None)
        agent = cls(model, tokenizer=tokenizer, image_processor=image_processor, name=str(base), **settings)
        agent.model.eval()
        # What a trained agent saved from this one names as its base: the base's own spec, not this folder.
        agent.base = settings_base if adapter else str(path)
        if adapter:
            from peft import PeftModel

            agent.model = PeftModel.from_pretrained(model, str(path), is_trainable=trainable)
            agent.has_lora = True
            agent.lora_settings = lora
            head = path / "value_head.safetensors"
            if head.exists():
                from safetensors.torch import load_file

                agent.add_value_head()
                agent.value_head.load_state_dict(load_file(str(head)))
        return agent

    def settings(self) -> dict[str, Any]:
        """The agent's own settings (what ``agent.json`` stores)."""
        return {
            "system_prompt": self.system_prompt,
            "user_template": self.user_template,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_new_tokens": self.max_new_tokens,
        }

    def save_pretrained(self, folder: str | Path, *, base: str | None = None) -> None:
        """Write the agent to ``folder``: with LoRA, the adapter, the value head and ``agent.json`` naming
        ``base`` (default :attr:`base`, the base model's folder or id); without LoRA, the whole model,
        tokenizer and image processor."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        settings = self.settings()
        if self.has_lora:
            self.model.save_pretrained(str(folder))
            settings["base"] = base or self.base
            settings["lora"] = getattr(self, "lora_settings", None)
            if self.value_head is not None:
                from safetensors.torch import save_file

                save_file(self.value_head.state_dict(), str(folder / "value_head.safetensors"))
        else:
            self.model.save_pretrained(str(folder))
            self.tokenizer.save_pretrained(str(folder))
            self.image_processor.save_pretrained(str(folder))
        (folder / "agent.json").write_text(json.dumps(settings, indent=2) + "\n")

    def add_lora(
        self,
        r: int = 16,
        alpha: int = 32,
        dropout: float = 0.0,
        target: Sequence[str] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    ) -> None:
        """Wrap the model with a peft LoRA adapter on the language model's linear layers (never the vision
        tower). The base weights are frozen; :meth:`reference` runs the model with the adapter disabled."""
        from peft import LoraConfig, get_peft_model

        if self.has_lora:
            return
        names = [
            name
            for name, module in self.model.named_modules()
            if isinstance(module, nn.Linear)
            and name.rsplit(".", 1)[-1] in target
            and ("language_model" in name or "text_model" in name)
        ]
        if not names:
            raise AgentError(
                f"{self.name}: no linear layers named {list(target)} under a language_model/text_model module; "
                "pass target= with the language model's layer names."
            )
        config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=names, bias="none")
        self.model = get_peft_model(self.model, config)
        self.has_lora = True
        self.lora_settings = {"r": r, "alpha": alpha, "dropout": dropout, "target": list(target)}

    def add_value_head(self) -> nn.Linear:
        """A linear value head on the language model's last hidden state (zero-initialised, float32)."""
        if self.value_head is None:
            hidden = self.model.config.get_text_config().hidden_size
            self.value_head = nn.Linear(hidden, 1)
            nn.init.zeros_(self.value_head.weight)
            nn.init.zeros_(self.value_head.bias)
        return self.value_head

    def enable_gradient_checkpointing(self) -> None:
        """Recompute the language model's activations in the backward pass instead of keeping them: less memory
        in a training step for about one more forward pass of compute. Works with LoRA (call it before or after
        :meth:`add_lora`); log-probs and gradients are unchanged (a test checks it).

        Uses transformers' ``gradient_checkpointing_enable`` with ``use_reentrant=False`` and
        ``enable_input_require_grads`` (the embeddings are frozen under LoRA, so without it the checkpointed
        layers would see inputs that need no gradient).
        """
        from transformers.modeling_layers import GradientCheckpointingLayer

        if not getattr(self.model, "supports_gradient_checkpointing", False):
            raise AgentError(f"{self.name}: {type(self.model).__name__} does not support gradient checkpointing.")
        self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.model.enable_input_require_grads()
        self._checkpointed = [m for m in self.model.modules() if isinstance(m, GradientCheckpointingLayer)]
        self.gradient_checkpointing = True

    def _arm_checkpointing(self) -> None:
        # transformers checkpoints a layer only when the layer is in training mode; the agent stays in eval mode
        # (no dropout, so sampling and scoring compute the same log-probs), so only the checkpointed layers' own
        # flag is set, not their children's. Re-armed before every training forward, in case of a later eval().
        for layer in self._checkpointed:
            layer.training = True

    def distribute(self, wrap: Any) -> None:
        """Run the training forward pass (:meth:`score` with gradients) through ``wrap(module)`` of the model
        and of the value head, e.g. ``accelerate.Accelerator.prepare``, which wraps them in
        ``DistributedDataParallel`` so that gradients are averaged over processes. Generation, the reference
        pass and saving keep using the unwrapped modules (the wrappers share their parameters)."""
        self._train_model = wrap(self.model)
        self._train_value_head = wrap(self.value_head) if self.value_head is not None else None

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters an RL update changes: the LoRA adapter's and the value head's."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.value_head is not None:
            params += list(self.value_head.parameters())
        return params

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------ messages and model inputs
    def messages(self, observation: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The chat for one observation: the system prompt, then the preview image and the text fields."""
        progress = float(np.asarray(observation.get("progress", 0.0)).reshape(-1)[0])
        text = self.user_template.format(
            query=observation["query"],
            prompt=observation["prompt"],
            progress=round(100 * progress),
            step=observation.get("step", ""),
        )
        messages: list[dict[str, Any]] = []
        if self.system_prompt is not None:
            messages.append({"role": "system", "content": [{"type": "text", "text": self.system_prompt}]})
        messages.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]})
        return messages

    @property
    def _own_inputs(self) -> bool:
        """Whether the inputs are built here (Qwen-VL, LLaVA) rather than by the model's processor."""
        return self.family in _QWEN_FAMILIES or self.family == "llava"

    def _image_inputs(self, images: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
        pil = [Image.fromarray(np.asarray(image, dtype=np.uint8)) for image in images]
        if not self._own_inputs:  # processors of multi-image families take one list of images per sample
            inputs = self.image_processor(images=[[p] for p in pil], return_tensors="pt")
            return {k: v for k, v in inputs.items() if k in _PIXEL_KEYS}
        return dict(self.image_processor(images=pil, return_tensors="pt"))

    def _context_ids(self, observations: list[dict[str, Any]]) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        """Token ids of each observation's chat up to the answer, with image placeholders expanded, and the
        batch's image inputs (from the image processor, or from the model's processor for the other families,
        so each preview is processed once)."""
        image_inputs = self._image_inputs([o["preview"] for o in observations]) if self._own_inputs else {}
        pixels: list[dict[str, torch.Tensor]] = []
        contexts = []
        for i, observation in enumerate(observations):
            text = self.tokenizer.apply_chat_template(
                self.messages(observation), chat_template=self.chat_template, tokenize=False, add_generation_prompt=True
            )
            if self.family in _QWEN_FAMILIES:
                merge = int(getattr(self.image_processor, "merge_size", 2))
                count = int(image_inputs["image_grid_thw"][i].prod()) // merge**2
            elif self.family == "llava":
                count = self._llava_image_tokens()
            if text.count(self._image_token) != 1:
                raise AgentError(
                    f"{self.name}: the chat template rendered {text.count(self._image_token)} image placeholders "
                    f"{self._image_token!r} for one image; it must render {{'type': 'image'}} parts as the "
                    "model's image placeholder."
                )
            if self._own_inputs:
                text = text.replace(self._image_token, self._image_token * count)
                ids = self.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
            else:
                image = Image.fromarray(np.asarray(observation["preview"], dtype=np.uint8))
                encoded = self.processor(text=[text], images=[[image]], return_tensors="pt")
                ids = encoded["input_ids"][0]
                pixels.append({k: v for k, v in encoded.items() if k in _PIXEL_KEYS})
            contexts.append(ids)
        if pixels:
            image_inputs = {k: torch.cat([p[k] for p in pixels]) for k in pixels[0]}
        return contexts, image_inputs

    def _llava_image_tokens(self) -> int:
        vision = self.model.config.vision_config
        count = (vision.image_size // vision.patch_size) ** 2
        return count + (1 if self.model.config.vision_feature_select_strategy == "full" else 0)

    def _model_inputs(self, sequences: list[torch.Tensor], image_inputs: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Left-padded batch of token sequences with their attention mask and image inputs."""
        length = max(len(s) for s in sequences)
        input_ids = torch.full((len(sequences), length), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(sequences), length), dtype=torch.long)
        for i, seq in enumerate(sequences):
            input_ids[i, length - len(seq) :] = seq
            attention[i, length - len(seq) :] = 1
        inputs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention, **image_inputs}
        if self.family in _QWEN_FAMILIES:
            # Without it generate() silently mis-positions the image tokens (M-RoPE).
            inputs["mm_token_type_ids"] = (input_ids == self._image_token_id).to(torch.int)
        device = self.device
        return {k: v.to(device) if torch.is_tensor(v) else v for k, v in inputs.items()}

    # ------------------------------------------------------------------ acting
    def act(self, observations: Any) -> list[str]:
        """Sample one prompt per observation (the Policy interface shared with the baselines)."""
        return [turn.prompt for turn in self.generate(observations)]

    @torch.no_grad()
    def generate(self, observations: Any, *, greedy: bool = False) -> list[Turn]:
        """Sample an answer per observation, in one batch, and return the turns with their log-probs."""
        observations = split_observations(observations)
        contexts, image_inputs = self._context_ids(observations)
        inputs = self._model_inputs(contexts, image_inputs)
        with self.autocast():
            out = self.model.generate(**inputs, generation_config=self.sampling_config(greedy=greedy))
        new_tokens = out.sequences[:, inputs["input_ids"].shape[1] :].cpu()
        logits = self._mask(torch.stack(out.logits, dim=1).float().cpu() / self.temperature)
        logprobs = torch.log_softmax(logits, dim=-1).gather(-1, new_tokens.unsqueeze(-1)).squeeze(-1)
        turns = []
        for i, observation in enumerate(observations):
            tokens = new_tokens[i].tolist()
            end = next((j + 1 for j, t in enumerate(tokens) if t in self.eos_token_ids), len(tokens))
            response = new_tokens[i, :end]
            text = self.tokenizer.decode(response, skip_special_tokens=True)
            parsed = parse_prompt(text)
            turns.append(
                Turn(
                    image=np.asarray(observation["preview"], dtype=np.uint8),
                    context_ids=contexts[i],
                    response_ids=response.clone(),
                    logprobs=logprobs[i, :end].clone(),
                    text=text,
                    prompt=parsed if parsed is not None else str(observation["prompt"]),
                    fallback=parsed is None,
                )
            )
        return turns

    def sampling_config(self, *, greedy: bool = False) -> Any:
        """The complete ``GenerationConfig`` :meth:`generate` samples with: temperature, top-p, the answer
        budget, the suppressed image tokens and every other logits processor explicitly off (top-k 0,
        repetition penalty 1, no n-gram ban, no min-p, ...). With ``top_p == 1`` the sampling distribution is
        exactly ``softmax(logits / temperature)`` over the unsuppressed tokens, the one :meth:`score` computes."""
        from transformers import GenerationConfig

        if greedy:
            processors = {k: v for k, v in _NEUTRAL_PROCESSORS.items() if k not in _SAMPLING_ONLY}
            sampling: dict[str, Any] = dict(do_sample=False)
        else:
            processors = _NEUTRAL_PROCESSORS
            sampling = dict(do_sample=True, temperature=self.temperature, top_p=self.top_p)
        return GenerationConfig(
            **processors,
            **sampling,
            max_new_tokens=self.max_new_tokens,
            suppress_tokens=self.suppressed_ids or None,
            output_logits=True,
            return_dict_in_generate=True,
            pad_token_id=self.pad_token_id,
            eos_token_id=sorted(self.eos_token_ids),
        )

    # ------------------------------------------------------------------ scoring (training forward pass)
    def score(
        self, turns: Sequence[Turn], *, reference: bool = False, values: bool = False, entropy: bool = False
    ) -> Scores:
        """Log-probs of each turn's answer tokens, and optionally the value head's values and the policy's
        entropy at the same positions, one tensor per turn.

        Runs with gradients when grad mode is on. ``reference=True`` scores with the LoRA adapter disabled
        (the frozen reference policy). The value at token j estimates the return before token j is emitted.
        """
        if values and self.value_head is None:
            raise AgentError("values=True needs a value head: call add_value_head() first.")
        sequences = [torch.cat([t.context_ids, t.response_ids]) for t in turns]
        inputs = self._model_inputs(sequences, self._image_inputs([t.image for t in turns]))
        longest = max(len(t.response_ids) for t in turns)
        disable = self.model.disable_adapter() if reference and self.has_lora else contextlib.nullcontext()
        training = torch.is_grad_enabled() and not reference
        model = self._train_model if training and self._train_model is not None else self.model
        head = self._train_value_head if training and self._train_value_head is not None else self.value_head
        if training and self.gradient_checkpointing:
            self._arm_checkpointing()
        with disable, self.autocast():
            out = model(**inputs, use_cache=False, output_hidden_states=values, logits_to_keep=longest + 1)
        # The sequences are left-padded, so they all end at the last position; logits_to_keep kept the last
        # (longest + 1) positions, and the logits at position p predict the token at p + 1.
        logits = self._mask(out.logits[:, :-1].float() / self.temperature)
        if values:
            self.value_head.to(out.hidden_states[-1].device)
            # One call over the batch: a DistributedDataParallel head must run once per backward.
            all_values = head(out.hidden_states[-1][:, -(longest + 1) : -1].float()).squeeze(-1)
        result = Scores([], [] if values else None, [] if entropy else None)
        for i, turn in enumerate(turns):
            n = len(turn.response_ids)
            all_logprobs = torch.log_softmax(logits[i, longest - n :], dim=-1)
            tokens = turn.response_ids.to(all_logprobs.device)
            result.logprobs.append(all_logprobs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1))
            if values:
                result.values.append(all_values[i, longest - n :])
            if entropy:
                finite = torch.nan_to_num(all_logprobs, neginf=0.0)  # masked tokens: 0 * -inf would be nan
                result.entropy.append(-(all_logprobs.exp() * finite).sum(-1))
        return result

    def _mask(self, logits: torch.Tensor) -> torch.Tensor:
        if self.suppressed_ids:
            logits = logits.clone()
            logits[..., self.suppressed_ids] = float("-inf")
        return logits

    def reference(self, turns: Sequence[Turn]) -> list[torch.Tensor]:
        """The reference policy's log-probs of the turns' tokens (adapter disabled, no gradients)."""
        with torch.no_grad():
            return self.score(turns, reference=True).logprobs


#: Every logits processor of ``generate`` set to "off" (None would let a checkpoint's config fill it in).
_NEUTRAL_PROCESSORS: dict[str, Any] = dict(
    top_k=0,
    typical_p=1.0,
    min_p=None,
    epsilon_cutoff=0.0,
    eta_cutoff=0.0,
    repetition_penalty=1.0,
    encoder_repetition_penalty=1.0,
    no_repeat_ngram_size=0,
    encoder_no_repeat_ngram_size=0,
    length_penalty=1.0,
    min_length=0,
    min_new_tokens=None,
    num_beams=1,
    num_return_sequences=1,
    diversity_penalty=0.0,
    bad_words_ids=None,
    sequence_bias=None,
    forced_bos_token_id=None,
    forced_eos_token_id=None,
    begin_suppress_tokens=None,
    exponential_decay_length_penalty=None,
    renormalize_logits=False,
    remove_invalid_values=False,
)


_SAMPLING_ONLY = ("top_k", "typical_p", "min_p", "epsilon_cutoff", "eta_cutoff")


def _neutral_generation_config(source: Any) -> Any:
    """A generation config with the checkpoint's special token ids and nothing else: the defaults
    ``generate`` fills unset fields from, so none of the checkpoint's sampling settings can leak in."""
    from transformers import GenerationConfig

    ids = {
        k: getattr(source, k, None) for k in ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")
    }
    return GenerationConfig(**{k: v for k, v in ids.items() if v is not None})


def _resolve_base(base: Any) -> Any:
    """``"toy"`` names the shipped toy policy; anything else is a folder or a model id."""
    if base == "toy":
        from agents.toy import TOY_POLICY_DIR

        return TOY_POLICY_DIR
    return base
