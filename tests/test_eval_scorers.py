"""Every scorer on small hand-built cases whose scores are worked out in the comments, read from the
benchmarks' own file formats, including the answer-reading corner cases."""

from __future__ import annotations

import csv
import json

import pytest

from fusion.eval import documents, judges, multiple_choice, vqa, yesno
from fusion.eval.choice import infer_choice, letter_of, llava_choice
from fusion.eval.files import EvalInputError
from fusion.eval.xlsx import read_xlsx

SUFFIX = "\nAnswer the question using a single word or phrase."


def jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def answers(*pairs, **extra):
    return [{"question_id": qid, "text": text, **extra} for qid, text in pairs]


# ----- POPE ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "reading"),
    [
        ("Yes, there is a dog.", "yes"),
        ("No.", "no"),
        ("There is no dog.", "no"),
        ("I do not think so", "no"),
        ("Nope", "yes"),  # neither word: POPE counts it as yes
        ("", "yes"),  # empty answer: yes too
        ("Yes. But not sure", "yes"),  # only the first sentence counts
        ("NO", "yes"),  # case-sensitive: only "No" / "no" / "not"
    ],
)
def test_pope_answer_reading(text, reading):
    assert yesno.pope_answer(text) == reading


POPE_CASES = [  # (id, split, label, answer)
    (1, "random", "yes", "Yes"),
    (2, "random", "yes", "No"),
    (3, "random", "no", "Yes"),
    (4, "random", "no", "No, there is not."),
    (5, "adversarial", "yes", "Yes"),
    (6, "adversarial", "no", "Nope"),
    (7, "adversarial", "no", "no"),
]


def _check_pope(result):
    random, adversarial = result["metrics"]["splits"]["random"], result["metrics"]["splits"]["adversarial"]
    # random: TP 1, FN 1, FP 1, TN 1.
    assert random == {"accuracy": 50.0, "precision": 50.0, "recall": 50.0, "f1": 50.0, "yes_ratio": 50.0, "n": 4}
    # adversarial: TP 1 (5), FP 1 (6, "Nope" reads yes), TN 1 (7): precision 1/2, recall 1, F1 2/3.
    assert adversarial["accuracy"] == pytest.approx(200 / 3)
    assert adversarial["precision"] == pytest.approx(50.0) and adversarial["recall"] == pytest.approx(100.0)
    assert adversarial["f1"] == pytest.approx(200 / 3) and adversarial["yes_ratio"] == pytest.approx(200 / 3)
    # pooled: TP 2, FP 2, TN 2, FN 1.
    assert result["metrics"]["all"]["accuracy"] == pytest.approx(400 / 7)
    assert result["metrics"]["all"]["f1"] == pytest.approx(100 * 2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert result["headline"]["POPE"] == pytest.approx((50 + 200 / 3) / 2, abs=1e-3)


def test_pope_from_jsonl_annotations(tmp_path):
    ann = jsonl(tmp_path / "ann.jsonl", [{"question_id": i, "category": s, "label": y} for i, s, y, _ in POPE_CASES])
    _check_pope(yesno.score_pope(answers(*[(i, a) for i, _, _, a in POPE_CASES]), ann))


def test_pope_from_the_official_label_files(tmp_path):
    folder = tmp_path / "coco"
    folder.mkdir()
    for split in ("random", "adversarial"):
        rows = [{"question_id": n, "label": y} for n, (_, s, y, _) in enumerate(POPE_CASES) if s == split]
        jsonl(folder / f"coco_pope_{split}.json", rows)
    got = [{"question_id": i, "text": a, "category": s} for i, s, _, a in POPE_CASES]
    _check_pope(yesno.score_pope(got, annotation_dir=folder))
    with pytest.raises(EvalInputError, match="4 labels but 3 answers"):
        yesno.score_pope(got[1:], annotation_dir=folder)


# ----- MME -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "reading"),
    [
        ("Yes", "yes"),
        ("No, it is not", "no"),
        ("not sure", "no"),
        ("Y", "other"),
        ("", "other"),
        ("The answer is yes", "other"),
    ],
)
def test_mme_answer_reading(text, reading):
    assert yesno.mme_answer(text) == reading


MME_ROWS = [  # (category, image, prediction, truth)
    ("color", "a.jpg", "Yes", "Yes"),
    ("color", "a.jpg", "No", "No"),
    ("color", "b.jpg", "Yes", "Yes"),
    ("color", "b.jpg", "Yes", "No"),
    ("code_reasoning", "c.png", "no", "No"),
    ("code_reasoning", "c.png", "", "Yes"),
]


def test_mme_scores_by_hand():
    s = yesno.mme_scores(MME_ROWS)
    # color: acc 3/4, acc+ 1/2 (image b has a wrong answer): 100 * (0.75 + 0.5).
    assert s["subtasks"]["color"] == {"acc": 75.0, "acc_plus": 50.0, "score": 125.0, "images": 2}
    # code_reasoning: the empty answer reads "other": acc 1/2, acc+ 0.
    assert s["subtasks"]["code_reasoning"]["score"] == 50.0
    assert s["perception"] == 125.0 and s["cognition"] == 50.0
    with pytest.raises(EvalInputError, match="not 2"):
        yesno.mme_scores(MME_ROWS[:3])


def test_mme_from_release_folder_and_tool_format(tmp_path):
    # MME's release layout: pairs in questions_answers_YN/<stem>.txt (images in images/), or beside the image.
    root = tmp_path / "MME_Benchmark_release_version"
    for d in ("color/questions_answers_YN", "color/images", "code_reasoning"):
        (root / d).mkdir(parents=True)
    for image in ("color/images/a.jpg", "color/images/b.jpg", "code_reasoning/c.png"):
        (root / image).write_bytes(b"")
    (root / "color/questions_answers_YN/a.txt").write_text(
        "Is it red? Please answer yes or no.\tYes\nIs it  blue? Please answer yes or no.\tNo\n"
    )
    (root / "color/questions_answers_YN/b.txt").write_text(
        "Is it red? Please answer yes or no.\tYes\nIs it green? Please answer yes or no.\tNo\n"
    )
    (root / "code_reasoning/c.txt").write_text(
        "Does it print 1? Please answer yes or no.\tNo\nDoes it print 2? Please answer yes or no.\tYes\n"
    )
    # LLaVA's MME file names both questions of an image "<category>/<image>"; the prompt tells them apart.
    got = [
        {"question_id": "color/a.jpg", "prompt": "Is it red? Please answer yes or no." + SUFFIX, "text": "Yes"},
        {"question_id": "color/a.jpg", "prompt": "Is it blue? Please answer yes or no." + SUFFIX, "text": "No"},
        {"question_id": "color/b.jpg", "prompt": "Is it red? Please answer yes or no." + SUFFIX, "text": "Yes"},
        {"question_id": "color/b.jpg", "prompt": "Is it green? Please answer yes or no." + SUFFIX, "text": "Yes"},
        {"question_id": "code_reasoning/c.png", "prompt": "Does it print 1? Please answer yes or no.", "text": "no"},
        {"question_id": "code_reasoning/c.png", "prompt": "Does it print 2? Please answer yes or no.", "text": ""},
    ]
    out_dir = tmp_path / "tool"
    result = yesno.score_mme(got, mme_root=root, export_dir=out_dir)
    assert result["headline"] == {"MME_P": 125.0, "MME_C": 50.0}  # the same rows as test_mme_scores_by_hand
    assert any("1 of 10 perception" in n for n in result["notes"])
    # The official tool's input format, read back: the same scores.
    assert sorted(p.name for p in out_dir.iterdir()) == ["code_reasoning.txt", "color.txt"]
    assert yesno.score_mme(results_dir=out_dir)["headline"] == {"MME_P": 125.0, "MME_C": 50.0}
    with pytest.raises(EvalInputError, match="have no answer"):
        yesno.score_mme(got[:4], mme_root=root)
    unknown = [{**got[0], "prompt": "Is it purple? Please answer yes or no."}]
    with pytest.raises(EvalInputError, match="is not a question of"):
        yesno.score_mme(unknown, mme_root=root)


def test_mme_from_jsonl_annotations(tmp_path):
    ann = jsonl(
        tmp_path / "mme.jsonl",
        [{"question_id": n, "category": c, "image": i, "answer": t} for n, (c, i, _, t) in enumerate(MME_ROWS)],
    )
    result = yesno.score_mme(answers(*[(n, p) for n, (_, _, p, _) in enumerate(MME_ROWS)]), annotations=ann)
    assert result["metrics"]["subtasks"]["color"]["score"] == 125.0


# ----- multiple choice: answer reading ----------------------------------------------------------------
OPTIONS = {"A": "red", "B": "blue", "C": "green", "D": "12 apples"}


@pytest.mark.parametrize(
    ("text", "choice"),
    [
        ("B", "B"),
        ("(C) green", "C"),
        ("The answer is D.", "D"),
        ("blue", "B"),  # option text instead of a letter
        ("It is 12 apples", "D"),  # a number with its unit, as the option's text
        ("", None),  # empty answer
        ("red or blue", None),  # two options' texts
        ("A and B", None),  # two letters
        ("Cannot determine the answer", "Z"),  # a refusal
        ("A cat is red", "A"),  # the article reads as option A (VLMEvalKit's default)
    ],
)
def test_mmbench_answer_reading(text, choice):
    assert infer_choice(text, OPTIONS) == choice


@pytest.mark.parametrize(
    ("text", "choice"),
    [
        ("C", "C"),
        ("(B) blue", "B"),
        ("B. blue", "B"),
        ("blue", None),
        ("The answer is C", None),
        ("", None),
        ("E", "E"),
    ],
)
def test_llava_answer_reading(text, choice):
    assert llava_choice(text) == choice


def test_ground_truth_letters():
    assert letter_of("(b)", OPTIONS) == "B"
    assert letter_of(2, OPTIONS) == "C"
    assert letter_of("3", OPTIONS) == "D"
    assert letter_of("Green", OPTIONS) == "C"
    with pytest.raises(ValueError):
        letter_of("purple", OPTIONS)


# ----- MMBench ---------------------------------------------------------------------------------------
def _mmbench_tsv(path, rows, with_answers=True):
    header = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image", "l2-category", "split"]
    if not with_answers:
        header.remove("answer")
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(header)
        for r in rows:
            w.writerow([r.get(h, "") for h in header])
    return path


MMBENCH_ROWS = [  # MMBench's TSVs hold the rotated copies: index + k * 1e6
    {"index": 1, "question": "Which animal?", "A": "cat", "B": "dog", "answer": "A", "category": "animals"},
    {"index": 1000001, "question": "Which animal?", "A": "dog", "B": "cat", "answer": "B", "category": "animals"},
    {
        "index": 2,
        "question": "Which colour?",
        "A": "red",
        "B": "blue",
        "C": "green",
        "answer": "C",
        "category": "colours",
    },
    {
        "index": 1000002,
        "question": "Which colour?",
        "A": "blue",
        "B": "green",
        "C": "red",
        "answer": "B",
        "category": "colours",
    },
    {
        "index": 2000002,
        "question": "Which colour?",
        "A": "green",
        "B": "red",
        "C": "blue",
        "answer": "A",
        "category": "colours",
    },
]


def test_mmbench_circular_from_the_tsv(tmp_path):
    tsv = _mmbench_tsv(tmp_path / "mmbench_dev.tsv", [{**r, "split": "dev", "l2-category": "l2"} for r in MMBENCH_ROWS])
    got = answers((1, "A"), (1000001, "cat"), (2, "C"), (1000002, "B"), (2000002, "B"))
    result = multiple_choice.score_mmbench(got, tsv)
    # Question 1: both rotations right ("cat" is option B's text). Question 2: its third rotation is wrong.
    assert result["headline"] == {"MMB_EN": 50.0}
    assert result["metrics"]["vanilla_accuracy"] == 100.0  # the first pass alone: both right
    assert result["metrics"]["per_category"] == {"animals": 100.0, "colours": 0.0}
    with pytest.raises(EvalInputError, match="1 of 5 MMBench rows have no answer"):
        multiple_choice.score_mmbench(got[:-1], tsv)
    partial = multiple_choice.score_mmbench(got[:-1], tsv, allow_missing=True)
    assert partial["headline"] == {"MMB_EN": 100.0} and partial["missing"] == 1


def test_mmbench_circular_from_runner_rotations(tmp_path):
    ann = jsonl(
        tmp_path / "ann.jsonl",
        [
            {"question_id": 1, "options": ["cat", "dog"], "answer": "A"},
            {"question_id": 2, "options": ["red", "blue", "green"], "answer": "C"},
        ],
    )
    # `fusion eval run --circular` copies: rotation k of question i is i + k * 1e6.
    got = [
        {"question_id": 1, "text": "A", "circular_group": 1, "circular_index": 0},
        {"question_id": 1000001, "text": "B", "circular_group": 1, "circular_index": 1},
        {"question_id": 2, "text": "C", "circular_group": 2, "circular_index": 0},
        {"question_id": 1000002, "text": "B", "circular_group": 2, "circular_index": 1},
        {"question_id": 2000002, "text": "C", "circular_group": 2, "circular_index": 2},  # rotated: C is blue
    ]
    result = multiple_choice.score_mmbench(got, ann, lang="cn")
    assert result["headline"] == {"MMB_CN": 50.0}
    got[-1]["text"] = "green"  # option A of that rotation, by its text
    assert multiple_choice.score_mmbench(got, ann)["headline"] == {"MMB_EN": 100.0}


def test_mmbench_submission_export(tmp_path):
    rows = [{**r, "hint": "look", "l2-category": "x"} for r in MMBENCH_ROWS[:2]]
    tsv = _mmbench_tsv(tmp_path / "test.tsv", rows, with_answers=False)
    got = answers((1, "A\x1f_x0041_"), (1000001, "B"))  # a control character and a literal escape survive
    result = multiple_choice.score_mmbench(got, tsv, export=tmp_path / "sub.xlsx")
    assert result["headline"] == {} and "exported only" in result["notes"][0]
    sheet = read_xlsx(tmp_path / "sub.xlsx")
    assert sheet[0] == ["index", "question", "A", "B", "C", "D", "prediction", "split"]
    assert sheet[1][0] == "1" and sheet[1][6] == "A\x1f_x0041_" and sheet[2][6] == "B"
    with pytest.raises(EvalInputError, match="no answer"):
        multiple_choice.score_mmbench(got[:1], tsv, export=tmp_path / "sub2.xlsx")


# ----- other multiple-choice benchmarks ----------------------------------------------------------------
def test_seed_bench_image_questions(tmp_path):
    seed = {
        "question_type": {"Scene Understanding": 1, "Instance Counting": 5},
        "questions": [
            {"question_id": "101", "data_type": "image", "question_type_id": 1, "answer": "A",
             "choice_a": "a park", "choice_b": "a road", "choice_c": "a lake", "choice_d": "a room"},
            {"question_id": "102", "data_type": "image", "question_type_id": 5, "answer": "B",
             "choice_a": "1", "choice_b": "2", "choice_c": "3", "choice_d": "4"},
            {"question_id": "900", "data_type": "video", "question_type_id": 10, "answer": "A",
             "choice_a": "x", "choice_b": "y", "choice_c": "z", "choice_d": "w"},
        ],
    }  # fmt: skip
    (tmp_path / "SEED-Bench.json").write_text(json.dumps(seed))
    got = answers(("101", "A"), ("102", "(C)"))
    result = multiple_choice.score_seed(got, tmp_path / "SEED-Bench.json", export=tmp_path / "sub.jsonl")
    assert result["headline"] == {"SEED-Image": 50.0}  # the video question is not part of SEED-Image
    assert result["metrics"]["per_category"] == {"Instance Counting": 0.0, "Scene Understanding": 100.0}
    assert [json.loads(x) for x in (tmp_path / "sub.jsonl").read_text().splitlines()][1] == {
        "question_id": "102",
        "prediction": "(C)",
    }


def test_scienceqa_img(tmp_path):
    problems = {
        "1": {
            "choices": ["cat", "dog"],
            "answer": 1,
            "image": "image.png",
            "split": "test",
            "subject": "natural science",
        },
        "2": {
            "choices": ["cat", "dog"],
            "answer": 0,
            "image": "image.png",
            "split": "test",
            "subject": "natural science",
        },
        "3": {"choices": ["up", "down"], "answer": 0, "image": None, "split": "test"},  # no image: not in IMG
        "4": {"choices": ["up", "down"], "answer": 0, "image": "image.png", "split": "train"},
    }
    (tmp_path / "problems.json").write_text(json.dumps(problems))
    got = answers(("1", "B"), ("2", "cat"))
    # FUSION's script reads letters only: "cat" is unreadable and wrong.
    assert multiple_choice.score_scienceqa(got, tmp_path / "problems.json")["headline"] == {"SQA": 50.0}
    # MMBench's rule reads the option text.
    assert multiple_choice.score_scienceqa(got, tmp_path / "problems.json", matcher="mmbench")["headline"] == {
        "SQA": 100.0
    }
    (tmp_path / "pid_splits.json").write_text(json.dumps({"test": ["1"], "train": ["4"]}))
    only_one = multiple_choice.score_scienceqa(got[:1], tmp_path / "problems.json", splits=tmp_path / "pid_splits.json")
    assert only_one["n"] == 1 and only_one["headline"] == {"SQA": 100.0}


def test_ai2d_mmstar_realworldqa(tmp_path):
    ai2d = jsonl(
        tmp_path / "ai2d.jsonl",
        [
            {"question_id": 1, "options": ["sun", "moon"], "answer": "1"},
            {"question_id": 2, "options": ["a", "b"], "answer": 0},
        ],
    )
    assert multiple_choice.score_ai2d(answers((1, "B."), (2, "")), ai2d)["headline"] == {"AI2D": 50.0}  # empty: wrong

    with open(tmp_path / "MMStar.tsv", "w", newline="") as f:  # options inside the question, no option columns
        w = csv.writer(f, delimiter="\t")
        w.writerow(["index", "question", "answer", "category", "l2_category"])
        w.writerow([0, "Q? Options: A: x, B: y", "A", "coarse perception", "image scene"])
        w.writerow([1, "Q? Options: A: x, B: y", "B", "math", "geometry"])
        w.writerow([2, "Q? Options: A: x, B: y", "C", "math", "geometry"])
    star = multiple_choice.score_mmstar(answers((0, "A"), (1, "(B)"), (2, "C D")), tmp_path / "MMStar.tsv")
    assert star["headline"]["MMStar"] == pytest.approx(200 / 3)  # "C D" names two letters
    assert star["metrics"]["per_category"] == {"coarse perception": 100.0, "math": 50.0}

    rwqa = jsonl(
        tmp_path / "rwqa.jsonl",
        [{"question_id": i, "answer": a} for i, a in enumerate(["B", "3", "Downhill", "A"])],
    )
    got = answers((0, "B."), (1, "3."), (2, "downhill road"), (3, ""))
    assert multiple_choice.score_realworldqa(got, rwqa)["headline"] == {"RWQA": 50.0}


def test_cvbench_2d_3d_averages(tmp_path):
    rows = [
        (0, "ADE20K", "Count", "(A)", "(A) 2"),
        (1, "ADE20K", "Count", "(B)", "The answer is B"),  # no "B." / "(B)": unreadable for FUSION's rule
        (2, "COCO", "Relation", "(C)", "C"),
        (3, "Omni3D", "Depth", "(A)", "A."),
        (4, "Omni3D", "Distance", "(B)", "(B)"),
    ]
    ann = jsonl(
        tmp_path / "test.jsonl",
        [{"idx": i, "source": s, "task": t, "choices": ["1", "2", "3"], "answer": a} for i, s, t, a, _ in rows],
    )
    result = multiple_choice.score_cvbench(answers(*[(i, p) for i, *_, p in rows]), ann)
    m = result["metrics"]
    assert m["per_source"] == {"ADE20K": 50.0, "COCO": 100.0, "Omni3D": 100.0}
    assert m["accuracy_2d"] == 75.0 and m["accuracy_3d"] == 100.0
    assert result["headline"] == {"CV-Bench": 87.5}  # (75 + 100) / 2, not the per-question 80
    with pytest.raises(EvalInputError, match="Omni3D"):
        multiple_choice.score_cvbench(answers(*[(i, p) for i, *_, p in rows[:3]]), ann, allow_missing=True)


def test_mmvp_pairs(tmp_path):
    with open(tmp_path / "Questions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Index", "Question", "Options", "Correct Answer"])
        w.writerow([1, "Is the door open?", "(a) Open (b) Closed", "(a)"])
        w.writerow([2, "Is the door open?", "(a) Open (b) Closed", "(b)"])
        w.writerow([3, "Facing left?", "(a) Left (b) Right", "(a)"])
        w.writerow([4, "Facing left?", "(a) Left (b) Right", "(b)"])
    result = multiple_choice.score_mmvp(answers((1, "A."), (2, "B"), (3, "A"), (4, "A")), tmp_path / "Questions.csv")
    assert result["headline"] == {"MMVP": 50.0, "MMVP_question": 75.0}  # pair 2 fails on question 4
    with pytest.raises(EvalInputError, match="no pair partner"):
        multiple_choice.score_mmvp(
            answers((1, "A"), (2, "B"), (3, "A")), tmp_path / "Questions.csv", allow_missing=True
        )


# ----- VQA accuracy ----------------------------------------------------------------------------------
def test_textvqa_official_file_and_llava_ids(tmp_path):
    data = {
        "data": [
            {"question_id": 10, "image_id": "img1", "question": "What brand?", "answers": ["nike"] * 10},
            {"question_id": 11, "image_id": "img2", "question": "What number?", "answers": ["2"] * 2 + ["3"] * 8},
        ]
    }
    (tmp_path / "TextVQA_0.5.1_val.json").write_text(json.dumps(data))
    by_id = vqa.score_textvqa(answers((10, "Nike."), (11, "two")), tmp_path / "TextVQA_0.5.1_val.json")
    assert by_id["headline"]["TextVQA"] == pytest.approx((1.0 + 0.6) / 2 * 100)
    # LLaVA's question file numbers questions by image; the question comes from the prompt.
    llava = [
        {"question_id": "img1", "prompt": "What brand?\nReference OCR token: NIKE" + SUFFIX, "text": "nike"},
        {"question_id": "img2", "prompt": "What number?" + SUFFIX, "text": "3"},
    ]
    assert vqa.score_textvqa(llava, tmp_path / "TextVQA_0.5.1_val.json")["headline"]["TextVQA"] == 100.0


def test_vizwiz_val_and_server_export(tmp_path):
    val = [
        {"image": "VizWiz_val_00000000.jpg", "answer_type": "other",
         "answers": [{"answer": "soup", "answer_confidence": "yes"}] * 10},
        {"image": "VizWiz_val_00000001.jpg", "answer_type": "unanswerable",
         "answers": [{"answer": "unanswerable", "answer_confidence": "yes"}] * 10},
    ]  # fmt: skip
    (tmp_path / "val.json").write_text(json.dumps(val))
    got = [
        {"question_id": 0, "image": "VizWiz_val_00000000.jpg", "text": "Soup."},
        {"question_id": 1, "image": "VizWiz_val_00000001.jpg", "text": "Tomato"},
    ]
    result = vqa.score_vizwiz(got, tmp_path / "val.json")
    assert result["headline"] == {"VizWiz": 50.0}
    assert result["metrics"]["accuracy_other"] == 100.0 and result["metrics"]["accuracy_unanswerable"] == 0.0
    upload = vqa.export_vizwiz([{"question_id": 7, "text": "Two Dogs."}], {"7": "VizWiz_test_00000007.jpg"})
    assert upload == [{"image": "VizWiz_test_00000007.jpg", "answer": "2 dogs"}]
    with pytest.raises(EvalInputError, match="names no image"):
        vqa.export_vizwiz([{"question_id": 8, "text": "x"}])


def test_vqa_jsonl_set(tmp_path):
    ann = jsonl(
        tmp_path / "vqa.jsonl",
        [{"question_id": 1, "answers": ["2"] * 2 + ["3"] * 8}, {"question_id": 2, "answers": [{"answer": "red"}] * 10}],
    )
    result = vqa.score_vqa(answers((1, "two"), (2, "Red.")), ann)
    assert result["headline"]["VQA"] == pytest.approx((0.6 + 1.0) / 2 * 100)


# ----- documents -------------------------------------------------------------------------------------
def test_anls():
    assert documents.anls("Hello", ["hello"]) == 1.0
    assert documents.anls("helo", ["hello"]) == pytest.approx(0.8)  # 1 edit / 5
    assert documents.anls("hel", ["hello"]) == pytest.approx(0.6)  # 2 / 5
    assert documents.anls("he", ["hello"]) == 0.0  # 1 - 3/5 = 0.4 is under the 0.5 threshold
    assert documents.anls("helo", ["world", "hello"]) == pytest.approx(0.8)  # best answer
    assert documents.anls("", ["a"]) == 0.0  # empty answer
    assert documents.anls("  Hello   World ", ["hello world"]) == 1.0  # case and spacing


def test_docvqa_file_and_export(tmp_path):
    (tmp_path / "val_v1.0.json").write_text(
        json.dumps({"data": [{"questionId": 1, "answers": ["hello"]}, {"questionId": 2, "answers": ["$5"]}]})
    )
    result = documents.score_docvqa(answers((1, "hello"), (2, "$ 5")), tmp_path / "val_v1.0.json")
    assert result["headline"]["DocVQA"] == pytest.approx((1 + (1 - 1 / 3)) / 2 * 100)  # "$ 5": 1 edit / 3
    (tmp_path / "test.json").write_text(json.dumps({"data": [{"questionId": 5}]}))
    out = documents.score_docvqa(answers(("5", "x")), tmp_path / "test.json", export=tmp_path / "up.json")
    assert out["headline"] == {} and json.loads((tmp_path / "up.json").read_text()) == [
        {"questionId": 5, "answer": "x"}
    ]


@pytest.mark.parametrize(
    ("prediction", "target", "right"),
    [
        ("104", "100", True),  # within 5%
        ("106", "100", False),
        ("12%", "0.12", True),  # a percentage is a fraction
        ("12%", "12", False),
        ("12 apples", "12", False),  # a number with a unit is a string
        ("Yes", "yes", True),
        ("", "0", False),  # empty answer
        ("0", "0", True),  # a zero target is matched as a string
        ("0.0", "0", False),
    ],
)
def test_chartqa_relaxed_correctness(prediction, target, right):
    assert documents.relaxed_correctness(prediction, target) is right


def test_chartqa_official_files(tmp_path):
    (tmp_path / "test_human.json").write_text(
        json.dumps(
            [
                {"imgname": "a.png", "query": "How many?", "label": "10"},
                {"imgname": "b.png", "query": "Max?", "label": "2019"},
            ]
        )
    )
    (tmp_path / "test_augmented.json").write_text(json.dumps([{"imgname": "c.png", "query": "Value?", "label": "0.5"}]))
    got = [
        {"question_id": 0, "image": "charts/a.png", "prompt": "How many?" + SUFFIX, "text": "10.4"},
        {"question_id": 1, "image": "b.png", "prompt": "Max?", "text": "2020"},  # 0.05% off, inside 5%: right
        {"question_id": 2, "image": "c.png", "prompt": "Value?", "text": "55%"},  # 0.55 is 10% off
    ]
    result = documents.score_chartqa(got, [tmp_path / "test_human.json", tmp_path / "test_augmented.json"])
    assert result["headline"]["ChartQA"] == pytest.approx(200 / 3)
    assert result["metrics"]["relaxed_human"] == 100.0 and result["metrics"]["relaxed_augmented"] == 0.0


def test_ocrbench(tmp_path):
    items = [
        {"id": 0, "dataset_name": "IC13", "type": "Regular Text Recognition", "answers": ["stop"]},
        {
            "id": 1,
            "dataset_name": "HME100k",
            "type": "Handwritten Mathematical Expression Recognition",
            "answers": ["x^2+1"],
        },
        {
            "id": 2,
            "dataset_name": "HME100k",
            "type": "Handwritten Mathematical Expression Recognition",
            "answers": "X^2",
        },
        {"id": 3, "dataset_name": "DocVQA", "type": "Doc-oriented VQA", "answers": ["go"]},
    ]
    (tmp_path / "OCRBench.json").write_text(json.dumps(items))
    got = answers((0, "The sign says STOP"), (1, "x ^ 2 + 1"), (2, "x^2"), (3, ""))
    result = documents.score_ocrbench(got, tmp_path / "OCRBench.json")
    # contained (case-insensitive) / spaces ignored for formulas / formulas keep case / empty answer
    assert result["metrics"]["score"] == 2 and result["headline"] == {"OCRBench": 50.0}
    assert result["metrics"]["groups"]["Text Recognition"] == 1
    assert result["metrics"]["per_type"]["Doc-oriented VQA"] == 0


# ----- GPT-judged benchmarks: exports -------------------------------------------------------------------
def test_judge_exports(tmp_path):
    judges.export_mmvet(answers((0, "a cat"), ("v1_5", "two")), tmp_path / "mmvet.json")
    assert json.loads((tmp_path / "mmvet.json").read_text()) == {"v1_0": "a cat", "v1_5": "two"}
    judges.export_llava_bench([{"question_id": 3, "prompt": "Describe.", "text": "A dog."}], tmp_path / "l.jsonl", "m")
    row = json.loads((tmp_path / "l.jsonl").read_text())
    assert {k: row[k] for k in ("question_id", "prompt", "text", "model_id", "metadata")} == {
        "question_id": 3,
        "prompt": "Describe.",
        "text": "A dog.",
        "model_id": "m",
        "metadata": {},
    }
    assert len(row["answer_id"]) == 22
    with pytest.raises(EvalInputError, match="two answers"):
        judges.export_mmvet(answers((0, "a"), ("0", "b")), tmp_path / "x.json")


def test_join_errors(tmp_path):
    ann = jsonl(tmp_path / "a.jsonl", [{"question_id": 1, "options": ["x", "y"], "answer": "A"}])
    with pytest.raises(EvalInputError, match="has no annotation"):
        multiple_choice.score_ai2d(answers((2, "A")), ann)
    with pytest.raises(EvalInputError, match="two answers"):
        multiple_choice.score_ai2d(answers((1, "A"), ("1", "B")), ann)
    two = jsonl(tmp_path / "b.jsonl", [{"question_id": i, "options": ["x", "y"], "answer": "A"} for i in (1, 2)])
    with pytest.raises(EvalInputError, match="1 of 2 questions have no answer"):
        multiple_choice.score_ai2d(answers((1, "A")), two)
    assert multiple_choice.score_ai2d(answers((1, "A")), two, allow_missing=True)["missing"] == 1
