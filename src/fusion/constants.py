"""Special ids of the reference implementation (placeholders in `input_ids`, marks in `labels`)."""

IGNORE_INDEX = -100
IMAGE_TOKEN_INDEX = -200
LATENT_IMAGE_TOKEN_INDEX = -300
INSTRUCT_INDEX = -400

IMAGE_TOKEN = "<image>"
LATENT_IMAGE_TOKEN = "<latent_image>"
VISION_START = "<vision_start>"
VISION_END = "<vision_end>"
