"""Procedural scenes: shapes with colors, counts, positions and rendered words, with exact QA."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any

from PIL import Image, ImageDraw, ImageFont

COLORS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
    "purple": (140, 60, 180),
    "orange": (240, 140, 30),
    "black": (20, 20, 20),
}
SHAPES = ("circle", "square", "triangle")
WORDS = ("CAT", "SUN", "MAP", "BOX", "RED", "TOP", "HAT", "PEN", "CUP", "KEY")
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


@dataclass
class SceneObject:
    shape: str
    color: str
    x: int  # center, pixels
    y: int
    size: int


@dataclass
class Scene:
    width: int
    height: int
    background: str
    objects: list[SceneObject] = field(default_factory=list)
    text: str | None = None
    text_color: str = "black"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scene:
        return cls(**{**d, "objects": [SceneObject(**o) for o in d["objects"]]})


def random_scene(
    rng: random.Random, category: str, width: int = 256, height: int = 192, word_ratio: float = 0.0
) -> Scene:
    """A scene whose content fits the category; objects never overlap so every fact is visible.

    Sizes scale with the canvas width (256 px is the reference), so small canvases for small
    models keep the same layout: one object per column, a word in the lower band. Text and scene
    scenes always carry a word; the others carry one with probability ``word_ratio``, so that a word
    on the image does not foretell that the question is about it.
    """
    scale = width / 256
    count = rng.randint(1, 4) if category in ("SynthCount", "SynthScene") else rng.randint(1, 3)
    if category == "SynthSpatial":
        count = 2
    cell_w = width // 4
    slots = rng.sample(range(4), count)  # one column per object: left-to-right order is unambiguous
    objects: list[SceneObject] = []
    shape = rng.choice(SHAPES)
    for slot in sorted(slots):
        while True:
            obj = SceneObject(
                shape=shape if category == "SynthCount" else rng.choice(SHAPES),
                color=rng.choice(sorted(COLORS)),
                x=slot * cell_w + cell_w // 2,
                y=height // 3 + round(rng.randint(-10, 10) * scale),
                size=round(rng.randint(22, 30) * scale),
            )
            # Spatial questions name objects by color and shape: the two must differ.
            if category != "SynthSpatial" or all((o.shape, o.color) != (obj.shape, obj.color) for o in objects):
                break
        objects.append(obj)
    text = rng.choice(WORDS) if category in ("SynthText", "SynthScene") else None
    if text is None and word_ratio > 0.0 and rng.random() < word_ratio:  # no draw at 0: default data unchanged
        text = rng.choice(WORDS)
    return Scene(width, height, "white", objects, text, "black")


def render(scene: Scene) -> Image.Image:
    img = Image.new("RGB", (scene.width, scene.height), scene.background)
    draw = ImageDraw.Draw(img)
    for o in scene.objects:
        box = (o.x - o.size, o.y - o.size, o.x + o.size, o.y + o.size)
        fill = COLORS[o.color]
        if o.shape == "circle":
            draw.ellipse(box, fill=fill)
        elif o.shape == "square":
            draw.rectangle(box, fill=fill)
        else:
            draw.polygon([(o.x, o.y - o.size), (o.x - o.size, o.y + o.size), (o.x + o.size, o.y + o.size)], fill=fill)
    if scene.text:
        font = ImageFont.load_default(size=max(8, round(36 * scene.height / 192)))
        draw.text(
            (scene.width // 2, scene.height * 3 // 4), scene.text, fill=COLORS[scene.text_color], font=font, anchor="mm"
        )
    return img


def describe(scene: Scene) -> str:
    """A caption that states exactly what is drawn."""
    parts = [f"{_article(o.color)} {o.color} {o.shape}" for o in scene.objects]
    text = f" and the word {scene.text}" if scene.text else ""
    background = f"{_article(scene.background).capitalize()} {scene.background} background"
    return f"{background} with {', '.join(parts)} from left to right{text}."


def _article(word: str) -> str:
    return "an" if word[:1].lower() in ("a", "e", "i", "o", "u") else "a"  # "" is not a vowel


def _name(o: SceneObject) -> str:
    return f"{o.color} {o.shape}"


def exact_qa(scene: Scene, category: str, rng: random.Random) -> list[tuple[str, str]]:
    """Question/answer pairs that are true of the scene by construction (yes/no and left/right
    answers are balanced, so no answer can be guessed from the question alone)."""
    objs = scene.objects
    qa: list[tuple[str, str]] = []
    if category == "SynthColor":
        unique = [o for o in objs if sum(x.shape == o.shape for x in objs) == 1]
        if unique:
            o = rng.choice(unique)
            qa.append((f"What color is the {o.shape}?", o.color.capitalize()))
        qa.append(("What color is the leftmost shape?", objs[0].color.capitalize()))
        if len(objs) > 1:
            qa.append(("What color is the rightmost shape?", objs[-1].color.capitalize()))
    if category == "SynthCount":
        qa.append((f"How many {objs[0].shape}s are there?", NUMBER_WORDS[len(objs)].capitalize()))
    if category == "SynthSpatial":
        left, right = objs  # sorted left to right
        a, b = (left, right) if rng.random() < 0.5 else (right, left)
        answer = "Left" if a is left else "Right"
        qa.append((f"Is the {_name(a)} to the left or to the right of the {_name(b)}?", answer))
        side = rng.choice(("left", "right"))
        target = left if side == "left" else right
        qa.append((f"Which object is on the {side}, the {_name(a)} or the {_name(b)}?", f"The {_name(target)}"))
        qa.append((f"What shape is on the {side}?", target.shape.capitalize()))
    if category == "SynthText" and scene.text:
        qa.append(("What word is written in the image?", scene.text))
    if category == "SynthScene":
        qa.append(("How many shapes are in the image?", NUMBER_WORDS[len(objs)].capitalize()))
        present = {(o.color, o.shape) for o in objs}
        if rng.random() < 0.5:
            color, shape = rng.choice(sorted(present))
            qa.append((f"Is there {_article(color)} {color} {shape} in the image?", "Yes"))
        else:
            absent = [(c, s) for c in sorted(COLORS) for s in SHAPES if (c, s) not in present]
            color, shape = rng.choice(absent)
            qa.append((f"Is there {_article(color)} {color} {shape} in the image?", "No"))
        if scene.text:
            qa.append(("What word is written in the image?", scene.text))
    return qa


# Answer pools for multiple-choice distractors (answers outside every pool stay short answers).
_POOLS = (
    tuple(c.capitalize() for c in COLORS),
    tuple(w.capitalize() for w in NUMBER_WORDS.values()),
    WORDS,
)


def choice_options(answer: str, rng: random.Random, n: int = 4) -> list[str] | None:
    """``n`` options (the answer and distractors of the same kind, shuffled), or None when the answer
    has no pool (yes/no, left/right, shapes, object names)."""
    pool = next((p for p in _POOLS if answer in p), None)
    if pool is None:
        return None
    options = [answer, *rng.sample([x for x in pool if x != answer], n - 1)]
    rng.shuffle(options)
    return options
