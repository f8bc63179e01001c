"""Draws the README's example images with the procedural renderer the tiny model was trained on:
``python examples/make_examples.py`` (writes next to this file)."""

from pathlib import Path

from fusion.synth.scene import Scene, SceneObject, render

HERE = Path(__file__).parent
SCENES = {
    # red circle, blue square, green triangle left to right, and the word SUN
    "shapes.png": Scene(
        128,
        128,
        "white",
        [
            SceneObject("circle", "red", 16, 42, 13),
            SceneObject("square", "blue", 48, 40, 12),
            SceneObject("triangle", "green", 112, 44, 13),
        ],
        "SUN",
    ),
    # three yellow squares
    "count.png": Scene(
        128,
        128,
        "white",
        [SceneObject("square", "yellow", x, 42, 12) for x in (16, 80, 112)],
    ),
    # an orange triangle left of a purple circle
    "spatial.png": Scene(
        128, 128, "white", [SceneObject("triangle", "orange", 48, 44, 14), SceneObject("circle", "purple", 80, 40, 13)]
    ),
}

if __name__ == "__main__":
    for name, scene in SCENES.items():
        render(scene).save(HERE / name)
        print(HERE / name)
