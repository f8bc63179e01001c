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


def random_scene(rng: random.Random, category: str, width: int = 256, height: int = 192) -> Scene:
    """A scene whose content fits the category; objects never overlap so every fact is visible."""
    count = rng.randint(1, 4) if category in ("SynthCount", "SynthScene") else rng.randint(1, 3)
    if category == "SynthSpatial":
        count = 2
    cell_w = width // 4
    slots = rng.sample(range(4), count)  # one column per object: left-to-right order is unambiguous
    objects = []
    shape = rng.choice(SHAPES)
    for slot in sorted(slots):
        objects.append(
            SceneObject(
                shape=shape if category == "SynthCount" else rng.choice(SHAPES),
                color=rng.choice(sorted(COLORS)),
                x=slot * cell_w + cell_w // 2,
                y=height // 3 + rng.randint(-10, 10),
                size=rng.randint(22, 30),
            )
        )
    text = rng.choice(WORDS) if category in ("SynthText", "SynthScene") else None
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
        font = ImageFont.load_default(size=36)
        draw.text(
            (scene.width // 2, scene.height * 3 // 4), scene.text, fill=COLORS[scene.text_color], font=font, anchor="mm"
        )
    return img


def describe(scene: Scene) -> str:
    """A caption that states exactly what is drawn."""
    parts = [f"a {o.color} {o.shape}" for o in scene.objects]
    text = f" and the word {scene.text}" if scene.text else ""
    return f"A {scene.background} background with {', '.join(parts)} from left to right{text}."


def exact_qa(scene: Scene, category: str, rng: random.Random) -> list[tuple[str, str]]:
    """Question/answer pairs that are true of the scene by construction."""
    objs = scene.objects
    qa: list[tuple[str, str]] = []
    if category == "SynthColor":
        unique = [o for o in objs if sum(x.shape == o.shape for x in objs) == 1]
        if unique:
            o = rng.choice(unique)
            qa.append((f"What color is the {o.shape}?", o.color.capitalize()))
        qa.append(("What color is the leftmost shape?", objs[0].color.capitalize()))
    if category == "SynthCount":
        qa.append((f"How many {objs[0].shape}s are there?", NUMBER_WORDS[len(objs)].capitalize()))
    if category == "SynthSpatial":
        a, b = objs  # sorted left to right
        qa.append((f"Is the {a.color} {a.shape} to the left or to the right of the {b.color} {b.shape}?", "Left"))
        qa.append(
            (
                f"Which object is on the right, the {a.color} {a.shape} or the {b.color} {b.shape}?",
                f"The {b.color} {b.shape}",
            )
        )
    if category == "SynthText" and scene.text:
        qa.append(("What word is written in the image?", scene.text))
    if category == "SynthScene":
        qa.append(("How many shapes are in the image?", NUMBER_WORDS[len(objs)].capitalize()))
        qa.append((f"Is there a {objs[0].color} {objs[0].shape} in the image?", "Yes"))
        if scene.text:
            qa.append(("What word is written in the image?", scene.text))
    return qa
