"""Parity on an accelerator: what the CPU tests check, run where the kernels differ.

    python -m benchmarks.device_parity [--fixtures ../shared/fixtures/reference] [--device cuda] [--no-vision]

For every reference fixture folder: the golden prefill logits and the generated ids and per-step
scores, with the dynamic cache and with the static cache (which transformers compiles on a GPU), in
fp32. Then the `medium` tower's masked and fused attention paths against the eager one, in fp32 and
bf16. Prints one JSON line per check and exits non-zero when an fp32 check is off by more than 1e-4.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from benchmarks.run import build_config, make_inputs
from fusion.modeling_fusion import FusionForCausalLM

ATOL = 1e-4


def fixture_checks(folder: Path, device: torch.device) -> dict:
    golden = json.loads((folder / "golden.json").read_text())
    t = load_file(folder / "golden.safetensors")
    model = FusionForCausalLM.from_pretrained(folder / golden["checkpoint"], dtype=torch.float32).to(device).eval()
    inf = golden["cases"]["inference"]
    pixels = (t[f"pixels_u8/{inf['image']}"].float() / 127.5 - 1)[None].to(device) if inf.get("image") else None
    ids = t["inference/input_ids"].to(device)
    instructs = t["inference/instructs"].to(device) if "inference/instructs" in t else None
    with torch.no_grad():
        logits = model(input_ids=ids, pixel_values=pixels, instruct_ids=instructs).logits
    result = {
        "fixture": folder.name,
        "prefill_max_abs_diff": (logits.cpu() - t["inference/prefill_logits"]).abs().max().item(),
    }
    expected, n = t["inference/generated_ids"], t["inference/generated_ids"].shape[1]
    finite = torch.isfinite(t["inference/step_scores"])
    for cache in ("dynamic", "static"):
        out = model.generate(
            input_ids=ids, pixel_values=pixels, instruct_ids=instructs, do_sample=False, max_new_tokens=n,
            min_new_tokens=n, output_scores=True, return_dict_in_generate=True,
            **({"cache_implementation": "static"} if cache == "static" else {}),
        )  # fmt: skip
        scores = torch.stack(out.scores, dim=1).cpu()
        result[cache] = {
            "ids_equal": torch.equal(out.sequences[:, ids.shape[1] :].cpu(), expected),
            "scores_max_abs_diff": (scores[finite] - t["inference/step_scores"][finite]).abs().max().item(),
            "compiled": hasattr(model, "_compiled_call"),
        }
    return result


def fixture_ok(r: dict) -> bool:
    decoded = all(r[c]["ids_equal"] and r[c]["scores_max_abs_diff"] <= ATOL for c in ("dynamic", "static"))
    return r["prefill_max_abs_diff"] <= ATOL and decoded


def vision_checks(device: torch.device) -> list[dict]:
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(0)
        with torch.device(device):
            model = FusionForCausalLM.from_config(build_config("medium"), dtype=dtype).eval()
        x = make_inputs(model, 2, 64, device)
        tower, outs = model.model.vision_tower, {}
        for attention in ("eager", "masked", "fused"):
            tower.attention = attention
            with torch.no_grad():
                v = model.model.encode_images(x["pixel_values"], x["instruct_ids"], model.config.default_query_len)
            outs[attention] = torch.cat([a.float().flatten() for a in (v.image_tokens, v.latents, v.context)])
        for attention in ("masked", "fused"):
            diff = (outs[attention] - outs["eager"]).abs().max().item()
            rows.append({"vision": attention, "dtype": str(dtype), "max_abs_diff": diff})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fixtures", default="../shared/fixtures/reference")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--vision", action=argparse.BooleanOptionalAction, default=True, help="tower paths check")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    ok = True
    for folder in sorted(p for p in Path(args.fixtures).glob("*") if (p / "golden.json").is_file()):
        result = fixture_checks(folder, device)
        ok &= fixture_ok(result)
        print(json.dumps(result), flush=True)
    for row in vision_checks(device) if args.vision else []:
        ok &= row["dtype"] != "torch.float32" or row["max_abs_diff"] <= ATOL
        print(json.dumps(row), flush=True)
    print("parity", "OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
