"""The benchmarks ``fusion eval score`` knows: their arguments, files and scorer.

Each entry adds its own sub-command (``fusion eval score pope --answers ... --annotation-dir ...``)
and returns a result (see ``common.result``); ``--out`` saves it for ``fusion eval table``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import documents, judges, mmmu, multiple_choice, synthetic, vqa, yesno
from .choice import MATCHERS
from .files import EvalInputError, read_answers


@dataclass(frozen=True)
class Benchmark:
    name: str
    help: str
    columns: tuple[str, ...]
    arguments: Callable[[argparse.ArgumentParser], None]
    score: Callable[[argparse.Namespace], dict[str, Any]]
    needs_answers: bool = True


def _answers(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.answers is None:
        raise EvalInputError("--answers is required")
    return read_answers(args.answers)


def _annotations(p: argparse.ArgumentParser, help: str, required: bool = True) -> None:
    p.add_argument("--annotations", type=Path, required=required, help=help)


def _matcher(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument(
        "--matcher",
        choices=MATCHERS,
        default=default,
        help="how the chosen option is read: mmbench (letter, then option text) or llava (letter regex); "
        f"default {default}",
    )


def _export(p: argparse.ArgumentParser, help: str, required: bool = False) -> None:
    p.add_argument("--export", type=Path, required=required, help=help)


def _questions(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--questions", type=Path, default=None, help=help)


def _need_one(args: argparse.Namespace, *names: str) -> None:
    if not any(getattr(args, n.replace("-", "_")) is not None for n in names):
        raise EvalInputError(f"give one of {' / '.join('--' + n for n in names)}")


def _mme_args(p: argparse.ArgumentParser) -> None:
    _annotations(p, "JSONL {question_id, category, image, answer}", required=False)
    p.add_argument("--mme-root", type=Path, help="MME's release folder (MME_Benchmark_release_version)")
    p.add_argument("--results-dir", type=Path, help="a folder in the official eval_tool's input format (no --answers)")
    p.add_argument("--export-dir", type=Path, help="write the official eval_tool's input files here")


def _mme(args: argparse.Namespace) -> dict[str, Any]:
    if args.results_dir is not None:
        return yesno.score_mme(results_dir=args.results_dir, export_dir=args.export_dir)
    _need_one(args, "annotations", "mme-root", "results-dir")
    return yesno.score_mme(
        _answers(args),
        annotations=args.annotations,
        mme_root=args.mme_root,
        export_dir=args.export_dir,
        allow_missing=args.allow_missing,
    )


def _pope_args(p: argparse.ArgumentParser) -> None:
    _annotations(p, "JSONL {question_id, label, category}", required=False)
    p.add_argument("--annotation-dir", type=Path, help="POPE's folder of coco_pope_<split>.json label files")
    _questions(p, "question file giving each answer's split (for answers without a category)")


def _pope(args: argparse.Namespace) -> dict[str, Any]:
    _need_one(args, "annotations", "annotation-dir")
    categories = yesno.categories_from_questions(args.questions) if args.questions else None
    return yesno.score_pope(_answers(args), args.annotations, args.annotation_dir, categories, args.allow_missing)


def _vizwiz_args(p: argparse.ArgumentParser) -> None:
    _annotations(p, "VizWiz val.json (or JSONL {question_id, answers}); leave out for the test split", required=False)
    _questions(p, "question file mapping question ids to images (for answers without an image)")
    _export(p, "write the evaluation server's upload JSON here")


def _vizwiz(args: argparse.Namespace) -> dict[str, Any]:
    _need_one(args, "annotations", "export")
    answers = _answers(args)
    images = vqa.question_images(args.questions) if args.questions else None
    if args.export is not None:
        from .files import write_json

        write_json(args.export, vqa.export_vizwiz(answers, images))
    if args.annotations is None:
        from .common import result

        return result(
            "vizwiz", {}, {"exported": str(args.export)}, len(answers), 0, [f"wrote {args.export} for the server"]
        )
    return vqa.score_vizwiz(answers, args.annotations, args.allow_missing, images)


def _mmbench(lang: str) -> Callable[[argparse.Namespace], dict[str, Any]]:
    def run(args: argparse.Namespace) -> dict[str, Any]:
        return multiple_choice.score_mmbench(
            _answers(args), args.annotations, lang, args.matcher, args.allow_missing, args.export
        )

    return run


def _mmbench_args(p: argparse.ArgumentParser) -> None:
    _annotations(p, "MMBench TSV (dev: with answers; test: export only) or JSONL with options / answer")
    _matcher(p, "mmbench")
    _export(p, "write the submission .xlsx here")


def _scienceqa_args(p: argparse.ArgumentParser) -> None:
    _annotations(p, "ScienceQA problems.json (or JSONL with options / answer)")
    p.add_argument("--splits", type=Path, help="pid_splits.json")
    p.add_argument("--split", default="test")
    _matcher(p, "llava")


def _mmmu_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--answer-dict", type=Path, required=True, help="MMMU's answer dict (answer_dict_val.json)")
    p.add_argument("--predictions", type=Path, help="official {id: prediction} file (instead of --answers)")
    _questions(p, "the question file (options of the multiple-choice questions), with --answers")
    _export(p, "write the official {id: prediction} file here")


def _mmmu(args: argparse.Namespace) -> dict[str, Any]:
    if args.predictions is not None:
        return mmmu.score_mmmu_files(args.answer_dict, predictions=args.predictions, export=args.export)
    if args.questions is None:
        raise EvalInputError("MMMU answers need --questions (the options), or give --predictions")
    from .questions import read_questions

    return mmmu.score_mmmu_files(
        args.answer_dict, answers=_answers(args), questions=read_questions(args.questions), export=args.export
    )


def _simple(fn: Callable[..., dict[str, Any]], matcher: bool = True) -> Callable[[argparse.Namespace], dict[str, Any]]:
    def run(args: argparse.Namespace) -> dict[str, Any]:
        kwargs = {"matcher": args.matcher} if matcher else {}
        return fn(_answers(args), args.annotations, allow_missing=args.allow_missing, **kwargs)

    return run


def _with(*adders: Callable[[argparse.ArgumentParser], None]) -> Callable[[argparse.ArgumentParser], None]:
    def add(p: argparse.ArgumentParser) -> None:
        for a in adders:
            a(p)

    return add


def _ann(help: str) -> Callable[[argparse.ArgumentParser], None]:
    return lambda p: _annotations(p, help)


def _match(default: str) -> Callable[[argparse.ArgumentParser], None]:
    return lambda p: _matcher(p, default)


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in [
        Benchmark(
            "mme", "MME (acc + acc+ per subtask; perception / cognition)", ("MME_P", "MME_C"), _mme_args, _mme, False
        ),
        Benchmark("pope", "POPE (accuracy, precision, recall, F1, yes-ratio per split)", ("POPE",), _pope_args, _pope),
        Benchmark("mmbench", "MMBench EN (circular; submission export)", ("MMB_EN",), _mmbench_args, _mmbench("en")),
        Benchmark("mmbench_cn", "MMBench CN (circular; submission export)", ("MMB_CN",), _mmbench_args, _mmbench("cn")),
        Benchmark(
            "seed",
            "SEED-Bench image questions",
            ("SEED-Image",),
            _with(_ann("SEED-Bench.json or JSONL"), _match("mmbench"), lambda p: _export(p, "submission JSONL")),
            lambda a: multiple_choice.score_seed(_answers(a), a.annotations, a.matcher, a.allow_missing, a.export),
        ),
        Benchmark(
            "scienceqa",
            "ScienceQA-IMG",
            ("SQA",),
            _scienceqa_args,
            lambda a: multiple_choice.score_scienceqa(
                _answers(a), a.annotations, a.splits, a.split, a.matcher, a.allow_missing
            ),
        ),
        Benchmark(
            "textvqa",
            "TextVQA (VQA accuracy)",
            ("TextVQA",),
            _ann("TextVQA_0.5.1_val.json or JSONL {question_id, answers}"),
            _simple(vqa.score_textvqa, matcher=False),
        ),
        Benchmark("vizwiz", "VizWiz (VQA accuracy on val; server export)", ("VizWiz",), _vizwiz_args, _vizwiz),
        Benchmark(
            "vqa",
            "any VQA-accuracy set given as JSONL {question_id, answers}",
            ("VQA",),
            _ann("JSONL {question_id, answers}"),
            _simple(vqa.score_vqa, matcher=False),
        ),
        Benchmark(
            "ai2d",
            "AI2D",
            ("AI2D",),
            _with(_ann("JSONL / JSON with options and answer"), _match("mmbench")),
            _simple(multiple_choice.score_ai2d),
        ),
        Benchmark(
            "chartqa",
            "ChartQA (relaxed accuracy, 5%% numeric tolerance)",
            ("ChartQA",),
            lambda p: p.add_argument(
                "--annotations",
                type=Path,
                nargs="+",
                required=True,
                help="test_human.json / test_augmented.json or JSONL",
            ),
            lambda a: documents.score_chartqa(_answers(a), a.annotations, a.allow_missing),
        ),
        Benchmark(
            "docvqa",
            "DocVQA (ANLS; test server export)",
            ("DocVQA",),
            _with(_ann("val_v1.0.json / test_v1.0.json or JSONL"), lambda p: _export(p, "server upload JSON")),
            lambda a: documents.score_docvqa(_answers(a), a.annotations, a.allow_missing, a.export),
        ),
        Benchmark(
            "ocrbench",
            "OCRBench (score out of 1000)",
            ("OCRBench",),
            _ann("OCRBench.json"),
            _simple(documents.score_ocrbench, matcher=False),
        ),
        Benchmark("mmmu", "MMMU (official parsing; official file formats)", ("MMMU",), _mmmu_args, _mmmu, False),
        Benchmark(
            "mmstar",
            "MMStar",
            ("MMStar",),
            _with(_ann("MMStar TSV or JSONL"), _match("mmbench")),
            _simple(multiple_choice.score_mmstar),
        ),
        Benchmark(
            "realworldqa",
            "RealWorldQA",
            ("RWQA",),
            _ann("JSONL {question_id, answer}"),
            _simple(multiple_choice.score_realworldqa, matcher=False),
        ),
        Benchmark(
            "synth",
            "held-out synthetic set (exact match per category and instruction type)",
            ("Synth",),
            _ann("questions.jsonl written by `fusion synth` (with answers)"),
            _simple(synthetic.score_synth, matcher=False),
        ),
        Benchmark(
            "cvbench",
            "CV-Bench (2D / 3D averages)",
            ("CV-Bench",),
            _with(_ann("CV-Bench test JSONL (idx, choices, answer, source, task)"), _match("llava")),
            _simple(multiple_choice.score_cvbench),
        ),
        Benchmark(
            "mmvp",
            "MMVP (pair accuracy)",
            ("MMVP", "MMVP_question"),
            _with(_ann("MMVP Questions.csv or JSONL"), _match("llava")),
            _simple(multiple_choice.score_mmvp),
        ),
        Benchmark(
            "mmvet",
            "MM-Vet: export the GPT judge's input",
            ("MM-Vet",),
            lambda p: _export(p, "the {v1_<id>: answer} JSON for MM-Vet's evaluator", required=True),
            lambda a: judges.export_mmvet(_answers(a), a.export),
        ),
        Benchmark(
            "llavabench",
            "LLaVA-Bench (in-the-wild): export the GPT review's input",
            ("LLaVA_W",),
            lambda p: (
                _export(p, "answer JSONL for eval_gpt_review_bench.py", required=True),
                p.add_argument("--model-id", default=None),
            ),
            lambda a: judges.export_llava_bench(_answers(a), a.export, a.model_id),
        ),
    ]
}
