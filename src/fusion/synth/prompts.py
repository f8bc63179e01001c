"""Prompts of the paper's synthesis steps, per category and per instruction type."""

from __future__ import annotations

CATEGORIES = ("SynthColor", "SynthCount", "SynthSpatial", "SynthScene", "SynthText")
INSTRUCTION_TYPES = (
    "multiple_choice",
    "short_conversation",
    "long_conversation",
    "contrast_short",
    "contrast_long",
    "reasoning",
    "text",
    "caption",  # procedural only: "Describe the image briefly." answered with the exact scene caption
)
# Procedural, text only (no image): the scene is given as its caption and the questions are multiple choice
# with 2-4 options. A language model trained from scratch lacks the in-context skill of reading options
# and answering with a letter that a pretrained LLM brings; text makes it cheap to learn.
TEXT_ONLY_INSTRUCTION_TYPES = ("text_multiple_choice",)
PROCEDURAL_INSTRUCTION_TYPES = ("caption", "short_conversation", "multiple_choice", *TEXT_ONLY_INSTRUCTION_TYPES)

SYSTEM = "You write precise, factual data for training vision-language models."

_FOCUS = {
    "SynthColor": "the exact colors of every object, including shades and which object has which color",
    "SynthCount": "how many objects of each kind there are, each one clearly separate and countable",
    "SynthSpatial": "where every object is relative to the others (left, right, above, below, in front, behind)",
    "SynthScene": "the overall scene: the setting, the main objects, their arrangement, lighting and mood",
    "SynthText": "short legible text that appears in the scene (signs, labels, posters) and what it says exactly",
}

DESCRIPTION_PROMPT = """Expand the caption into one detailed description of a single image, for an image generator.
Focus on {focus}. Only describe what is visible; keep it under 120 words; write one paragraph, nothing else.

Caption: {caption}"""

CONTRAST_PROMPT = """Here is the description of an image. Write the description of a second, very similar image that
differs in exactly one visible detail ({focus}). Write one paragraph, nothing else.

Description: {description}"""

_PAIRS = 'a JSON list of {n} objects {{"question": ..., "answer": ...}} '
_QA_SPECS = {
    "multiple_choice": 'a JSON list of 3 objects {"question": ..., "options": [4 short options], '
    '"answer": "A"|"B"|"C"|"D"}',
    "short_conversation": _PAIRS.format(n=3) + "whose answers are one word or phrase",
    "long_conversation": _PAIRS.format(n=3) + "with detailed answers of 2-4 sentences",
    "contrast_short": _PAIRS.format(n=2) + "about how the left image differs from the right one, answered in a "
    "word or phrase",
    "contrast_long": _PAIRS.format(n=2) + "about how the left image differs from the right one, answered in detail",
    "reasoning": _PAIRS.format(n=2) + "whose answers need a short chain of reasoning about the image, ending with "
    "the conclusion",
    "text": _PAIRS.format(n=2) + "about the text visible in the image, quoted exactly",
}

QA_PROMPT = """You see an image that matches this description{pair}:
{description}

Write {spec}. Questions must be answerable from the image alone. Reply with the JSON only."""


def description_prompt(caption: str, category: str) -> str:
    return DESCRIPTION_PROMPT.format(focus=_FOCUS[category], caption=caption)


def contrast_prompt(description: str, category: str) -> str:
    return CONTRAST_PROMPT.format(focus=_FOCUS[category], description=description)


def qa_prompt(description: str, instruction_type: str, description_b: str | None = None) -> str:
    pair = ""
    if description_b:
        pair = " (two images side by side; the right one matches the second description)"
        description = f"Left: {description}\nRight: {description_b}"
    return QA_PROMPT.format(pair=pair, description=description, spec=_QA_SPECS[instruction_type])


JUDGE_PROMPT = """Rate how well each answer in this conversation is supported by the image{described}.
{description}Conversation:
{conversation}

Reply with a single number between 0 and 1 (1: every answer is correct and answerable from the image)."""


def judge_prompt(description: str, conversation: list[dict[str, str]], with_image: bool) -> str:
    turns = "\n".join(f"{'Q' if t['from'] == 'human' else 'A'}: {t['value']}" for t in conversation)
    if with_image:
        return JUDGE_PROMPT.format(described="", description="", conversation=turns)
    return JUDGE_PROMPT.format(
        described=" described here", description=f"Description: {description}\n", conversation=turns
    )
