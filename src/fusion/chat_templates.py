"""Chat templates that produce the reference prompt strings, latent-token markers included.

Every template is the same structure with family-specific pieces: turns (system first) joined by
``separator``, each ``role_open`` + content + ``end_of_turn``. FUSION adds
``<vision_start><latent_image><vision_end>`` at the start of every user turn and, when the
conversation has an image, ``<vision_start><image><vision_end>\\n`` at the start of the first user
turn (the image marker is moved there from wherever it was). The Jinja source is generated from
the spec, so the same text serves ``apply_chat_template`` and other engines that read it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .constants import IMAGE_TOKEN, LATENT_IMAGE_TOKEN, VISION_END, VISION_START


@dataclass(frozen=True)
class TemplateSpec:
    name: str
    default_system: str
    role_open: str  # with "{role}"
    end_of_turn: str
    separator: str

    def generation_prompt(self) -> str:
        return self.separator + self.role_open.format(role="assistant")


TEMPLATES: dict[str, TemplateSpec] = {
    "phi_3": TemplateSpec("phi_3", "You are a helpful AI assistant.", "<|{role}|>\n", "<|end|>", "\n"),
    "llama_3": TemplateSpec(
        "llama_3",
        "You are a helpful, highly intelligent language and vision assistant. You are able to understand "
        "the visual content that the user provides, and assist the user with a variety of tasks using natural "
        "language. Whenever an image is present in the conversation, very carefully examine it and consider "
        "its content when formulating your response.",
        "<|start_header_id|>{role}<|end_header_id|>\n\n",
        "<|eot_id|>",
        "",
    ),
    "qwen_2": TemplateSpec("qwen_2", "You are a helpful assistant.", "<|im_start|>{role}\n", "<|im_end|>", "\n"),
}


def get_template(name: str) -> TemplateSpec:
    if name not in TEMPLATES:
        raise ValueError(f"unknown chat template {name!r} (known: {', '.join(TEMPLATES)})")
    return TEMPLATES[name]


def _q(text: str) -> str:
    return json.dumps(text)  # a valid Jinja string literal


def jinja_template(spec: TemplateSpec, use_im_start_end: bool = True) -> str:
    """Jinja source of ``spec`` for HF ``apply_chat_template``-style rendering."""
    latent = f"{VISION_START}{LATENT_IMAGE_TOKEN}{VISION_END}" if use_im_start_end else LATENT_IMAGE_TOKEN
    image = f"{VISION_START}{IMAGE_TOKEN}{VISION_END}" if use_im_start_end else IMAGE_TOKEN
    return (
        "{%- macro text_of(content) -%}"
        "{%- if content is string -%}{{ content }}"
        "{%- else -%}{%- for part in content -%}{%- if part.type == 'text' -%}{{ part.text }}{%- endif -%}"
        "{%- endfor -%}{%- endif -%}"
        "{%- endmacro -%}"
        "{%- macro has_image(content) -%}"
        "{%- if content is string -%}{{ '1' if '<image>' in content else '' }}"
        "{%- else -%}{%- for part in content -%}{{ '1' if part.type in ['image', 'image_url'] or "
        "(part.type == 'text' and '<image>' in part.text) else '' }}{%- endfor -%}{%- endif -%}"
        "{%- endmacro -%}"
        f"{{%- set ns = namespace(system={_q(spec.default_system)}, image=false, first_user=true) -%}}"
        "{%- for m in messages -%}"
        "{%- if m.role == 'system' -%}{%- set ns.system = text_of(m.content) -%}{%- endif -%}"
        "{%- if has_image(m.content) -%}{%- set ns.image = true -%}{%- endif -%}"
        "{%- endfor -%}"
        f"{{{{ {_q(spec.role_open)}.replace('{{role}}', 'system') }}}}"
        f"{{{{ ns.system }}}}{{{{ {_q(spec.end_of_turn)} }}}}"
        "{%- for m in messages if m.role != 'system' -%}"
        "{%- set text = text_of(m.content) -%}"
        "{%- if m.role == 'user' -%}"
        "{%- if has_image(m.content) -%}{%- set text = text.replace('<image>', '').strip() -%}{%- endif -%}"
        f"{{%- if ns.image and ns.first_user -%}}{{%- set text = {_q(image + chr(10))} + text.replace('<image>', '')"
        ".strip() -%}{%- endif -%}"
        f"{{%- set text = {_q(latent)} + text -%}}"
        "{%- set ns.first_user = false -%}"
        "{%- endif -%}"
        f"{{{{ {_q(spec.separator)} }}}}"
        f"{{{{ {_q(spec.role_open)}.replace('{{role}}', m.role) }}}}{{{{ text }}}}{{{{ {_q(spec.end_of_turn)} }}}}"
        "{%- endfor -%}"
        f"{{%- if add_generation_prompt -%}}{{{{ {_q(spec.generation_prompt())} }}}}{{%- endif -%}}"
    )
