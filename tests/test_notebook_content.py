"""What the committed notebooks say: no stale "no docs/benchmarks" line nor error output, a glossary with every
term of the source material (English and Chinese), and exercise checks that fail on wrong answers."""

import textwrap
from pathlib import Path

import nbformat
import pytest

from metalearn_kit.commands.notebooks import error_outputs, execute_notebook, list_notebooks

NOTEBOOK_DIR = Path(__file__).parent.parent / "notebooks"
NOTEBOOKS = list_notebooks(NOTEBOOK_DIR)
STALE_OUTPUTS = ("no docs/benchmarks", "no benchmark table ships")

# every term of the source material the kit teaches from, in English and Chinese
GLOSSARY_TERMS = [
    "meta-learning", "元学习", "task", "support set", "query set", "inner loop", "outer loop",
    "meta-training", "元训练", "meta-testing", "元测试", "meta-label", "元标签", "meta-database", "元数据库",
    "zero-shot", "零学习", "零样本学习", "few-shot", "少学习", "小样本学习", "transfer learning", "迁移学习",
    "GAN", "生成对抗网络", "VAE", "变分自编码器", "CGAN", "循环生成对抗网络", "条件生成对抗网络",
    "CIR", "循环迭代最小化", "sparse representation", "稀疏表示", "super-resolution", "超分辨率",
    "CNN", "卷积神经网络", "encoder", "编码器", "decoder", "解码器", "generator", "生成器", "restorer", "恢复器",
    "MetaNNs", "元神经网络", "MetaCNNs", "元卷积神经网络",
]


def _outputs_text(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        parts.append("".join(output.get("text", "")))
        parts.append("".join(output.get("data", {}).get("text/plain", "")))
        parts.extend(output.get("traceback", []))
    return "\n".join(parts)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_outputs_are_fresh(path):
    nb = nbformat.read(path, as_version=4)
    assert error_outputs(nb) == [], f"{path.name} holds error outputs"
    for i, cell in enumerate(nb.cells):
        text = _outputs_text(cell)
        for stale in STALE_OUTPUTS:
            assert stale not in text, f"{path.name} cell {i} prints {stale!r}: re-execute it after the fix"


def _glossary(nb) -> str:
    cells = [c.source for c in nb.cells if c.cell_type == "markdown" and c.source.startswith("## ")
             and "The words of the field" in c.source.splitlines()[0]]
    assert cells, "00 has no 'The words of the field' glossary section"
    return cells[0]


def test_glossary_has_every_term_and_links_each_row():
    glossary = _glossary(nbformat.read(NOTEBOOK_DIR / "00_welcome.ipynb", as_version=4))
    missing = [term for term in GLOSSARY_TERMS if term not in glossary]
    assert not missing, f"the glossary lacks {missing}"
    rows = [line for line in glossary.splitlines() if line.startswith("| ") and "---" not in line][1:]
    unlinked = [row.split("|")[1].strip() for row in rows if "](" not in row and "below" not in row]
    assert not unlinked, f"glossary rows without a link to the section that teaches them: {unlinked}"


def test_the_content_checks_can_fail(tmp_path):
    nb = nbformat.read(NOTEBOOK_DIR / "00_welcome.ipynb", as_version=4)
    nb.cells = [c for c in nb.cells if "The words of the field" not in c.source]
    with pytest.raises(AssertionError, match="glossary"):
        _glossary(nb)
    stale = nbformat.v4.new_code_cell("print()")
    stale.outputs = [nbformat.v4.new_output("stream", name="stdout", text="no docs/benchmarks/x.json yet\n")]
    nb.cells.append(stale)
    nbformat.write(nb, tmp_path / "00_stale.ipynb")
    with pytest.raises(AssertionError, match="no docs/benchmarks"):
        test_committed_outputs_are_fresh(tmp_path / "00_stale.ipynb")


# Wrong answers per exercise self-check cell (by cell id): each must make the check raise AssertionError.
# A snippet runs in the notebook's namespace right after the check passed on the right answer; the namespace is
# restored afterwards (and `restore`, if given, runs), so the rest of the notebook is unchanged.
WRONG_ANSWERS = {
    "00_welcome": {
        "c77bd735": ["_x = torch.rand(12, 1, 8, 8)\nmy_task = Task(support=(_x[:4], _x[:4]), query=(_x[4:], _x[4:]))",
                     "_x = torch.rand(9, 1, 8, 8)\nmy_task = Task(support=(_x[:5], _x[:5]), query=(_x[5:], _x[5:]))"],
        "468310a0": ['phase, term = "meta-testing", "元测试"', 'phase, term = "meta-training", "元学习"'],
    },
    "01_tasks": {
        "9ea83933": [
            'answer = RestorationTasks(photo_test, "gaussian_blur", shots=3, queries=2, split="train").sample(11)',
            'answer = RestorationTasks(photo_train, "gaussian_blur", shots=3, queries=2, split="test").sample(11)',
            'answer = RestorationTasks(photo_test, "gaussian_noise", shots=3, queries=2, split="test").sample(11)',
            'answer = RestorationTasks(photo_test, "gaussian_blur", shots=2, queries=2, split="test").sample(11)',
        ],
        "d4a4a8fa": [
            # the right formula under another name
            textwrap.dedent('''
                class Stripes(Degradation):
                    name = "stripes_wrong_name"
                    default_ranges = {"train": {"strength": (0.05, 0.15), "period": 4.0},
                                      "test": {"strength": (0.2, 0.3), "period": 4.0}}
                    def degrade(self, clean, params, generator):
                        columns = torch.arange(clean.shape[-1], dtype=clean.dtype)
                        return clean + params["strength"] * torch.sin(2 * torch.pi * columns / params["period"])
                answer = Stripes'''),
            # horizontal stripes (rows, not columns): the range check of the kit's clamp would pass
            textwrap.dedent('''
                class VerticalStripes(Degradation):
                    name = "vertical_stripes"
                    default_ranges = {"train": {"strength": (0.05, 0.15), "period": 4.0},
                                      "test": {"strength": (0.2, 0.3), "period": 4.0}}
                    def degrade(self, clean, params, generator):
                        rows = torch.arange(clean.shape[-2], dtype=clean.dtype)[:, None]
                        return clean + params["strength"] * torch.sin(2 * torch.pi * rows / params["period"])
                answer = VerticalStripes'''),
            # the test range of the training split
            textwrap.dedent('''
                class VerticalStripes(Degradation):
                    name = "vertical_stripes"
                    default_ranges = {"train": {"strength": (0.05, 0.15), "period": 4.0},
                                      "test": {"strength": (0.05, 0.15), "period": 4.0}}
                    def degrade(self, clean, params, generator):
                        columns = torch.arange(clean.shape[-1], dtype=clean.dtype)
                        return clean + params["strength"] * torch.sin(2 * torch.pi * columns / params["period"])
                answer = VerticalStripes'''),
        ],
    },
    "02_meta_training": {
        "ba259e70": ['prediction = {"10 steps vs 3": "lower", "doubled rate vs 3": None}',
                     'prediction = {"10 steps vs 3": "maybe", "doubled rate vs 3": "lower"}',
                     "answer = {**answer, (10, lr): answer[(10, lr)] * 1.1}",
                     "answer = {key: value for key, value in answer.items() if key != (1, lr)}"],
        "c6d26126": ["answer = maml_meta_loss",  # second order: not the first-order meta-gradient
                     "answer = lambda model, loss_fn, support, query, inner_lr, inner_steps: "
                     "maml_meta_loss(model, loss_fn, support, query, inner_lr, 0)"],
    },
    "03_meta_testing": {
        "e26e4188": ['answer = results["meta-learned"]["psnr"][3] + 0.5', 'answer = float("nan")'],
        "a1e6c330": ["answer = -1", 'answer = "never"'],
    },
    "04_generation": {
        "e32e3fd4": ["answer = 3.0",  # ||w||, the gradient norm, not the penalty
                     "answer = 9.0",  # ||w||^2
                     "answer = 2.0",  # ||w|| - 1, not squared
                     "answer = 10 * (3.0 - 1.0) ** 2",  # weighted by the critic loss's lambda = 10
                     "answer = 0.0"],  # "a linear critic needs no penalty"
        "7e7304ef": [
            # the explorer's class index 1 instead of the class explore_classes[1]
            "ns_answer = ns.sample(ns.context(evaluation.images_of(1)[:5]), 8, torch.Generator().manual_seed(0))",
            # conditioned on 1 image, not 5
            "ns_answer = ns.sample(ns.context(support_images(1, 1)), 8, torch.Generator().manual_seed(0))",
            # another seed
            "ns_answer = ns.sample(ns.context(support_images(1, 5)), 8, torch.Generator().manual_seed(1))",
            # the support images themselves, repeated (copies, not samples)
            "ns_answer = support_images(1, 5).repeat(2, 1, 1, 1)[:8]",
            # the MAML VAE's prior samples: not conditioned on the support set
            "ns_answer = mean_image(models['maml'].decode(torch.randn(8, config.latent, "
            "generator=torch.Generator().manual_seed(0))), config.likelihood)",
        ],
    },
    "05_restoration": {
        "fc643ddb": ["answer = -answer",  # meta minus classical: the sign turned
                     "answer = max(r['value'] for r in rows if r['experiment'] == 'denoising' and r['metric'] == "
                     "'psnr' and r['steps'] is None and 'input' not in r['method'])"
                     " - value('denoising', 'meta-init', 0)",
                     "answer = max(r['value'] for r in rows if r['experiment'] == 'denoising' and r['metric'] == "
                     "'psnr' and r['steps'] is None and 'input' not in r['method']) - value('denoising', 'joint', 5)",
                     "answer = value('denoising', 'BM3D', None) - value('denoising', 'noisy input', None)"],
        "0d51b95e": ["answer = restore(2, 'inpainting', 3)['meta-learned']['psnr'][3]",  # a PSNR, not the gain
                     "_curve = restore(2, 'inpainting', 3)['joint pretrained']['psnr']\nanswer = _curve[3] - _curve[0]",
                     "_curve = restore(3, 'inpainting', 3)['meta-learned']['psnr']\nanswer = _curve[3] - _curve[0]",
                     "_curve = restore(2, 'gaussian_blur', 3)['meta-learned']['psnr']\nanswer = _curve[3] - _curve[0]"],
    },
    "06_meta_database_and_beyond": {
        "1e9c5bfe": ['best_sr_run = db.best_runs(family="super_resolution", metric="psnr", '
                     'step=sizes["eval_steps"])[-1]["run_id"]',
                     "best_sr_run = str(best_sr_run)"],
        "6707b320": ['descriptor_start = warm_start(db, unseen_tasks["in range"][0], make_restorer, restoration_mse, '
                     'by="support_loss", finetune_steps=0, backbone="conv-restorer")'],
        # the full store (24 labelled tasks: no fallback), and a chooser told that one labelled task is enough
        "c04889c6": ['cold_choice = chooser.choose(new_tasks["gaussian_noise"])',
                     'cold_choice = MetaLabelChooser(cold_db if "cold_db" in globals() else starts_db, min_tasks=1, '
                     'step=sizes["eval_steps"]).choose(new_tasks["gaussian_noise"])'],
    },
}
# run after a check's wrong answers, by cell id: the wrong classes re-registered "vertical_stripes"
RESTORE = {"d4a4a8fa": "from metalearn_kit.tasks.degradation_base import register_degradation\n"
                        "register_degradation(answer)"}

_RUNNER = '''
def _check_fails_on(wrong, check, namespace):
    snapshot = dict(namespace)
    try:
        try:
            exec(wrong, namespace)
        except (ValueError, TypeError):  # the kit refuses the answer itself (a test task on training photos)
            return True
        exec(check, namespace)
    except AssertionError:
        return True
    finally:
        for key in [key for key in namespace if key not in snapshot]:
            del namespace[key]
        namespace.update(snapshot)
    return False


_passed_wrong = [w for w in {wrong!r} if not _check_fails_on(w, {check!r}, globals())]
{restore}
assert not _passed_wrong, "the check passed a wrong answer: " + repr(_passed_wrong)
print("the check failed on all {count} wrong answers")
'''


@pytest.mark.parametrize("stem", sorted(WRONG_ANSWERS))
def test_every_exercise_check_fails_on_a_wrong_answer(stem, tmp_path):
    path = NOTEBOOK_DIR / f"{stem}.ipynb"
    nb = nbformat.read(path, as_version=4)
    wrong = WRONG_ANSWERS[stem]
    checks = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith("# Self-check")]
    assert {c.get("id") for c in checks} == set(wrong), "every self-check cell needs wrong answers here"
    cells = []
    for cell in nb.cells:
        cells.append(cell)
        if cell.get("id") in wrong:
            source = _RUNNER.format(wrong=wrong[cell.id], check=cell.source, count=len(wrong[cell.id]),
                                    restore=RESTORE.get(cell.id, ""))
            probe = nbformat.v4.new_code_cell(source)
            probe.metadata["probe"] = True
            cells.append(probe)
    nb.cells = cells
    nbformat.write(nb, tmp_path / path.name)
    run = execute_notebook(tmp_path / path.name, profile="fast")
    assert run.ok, f"{path.name}: {run.errors}"


def _anchors(nb) -> set[str]:
    # Jupyter's anchor of a heading: its text with spaces as hyphens
    return {line.lstrip("#").strip().replace(" ", "-") for cell in nb.cells if cell.cell_type == "markdown"
            for line in cell.source.splitlines() if line.startswith("#")}


def test_glossary_links_reach_existing_sections():
    import re

    glossary = _glossary(nbformat.read(NOTEBOOK_DIR / "00_welcome.ipynb", as_version=4))
    links = re.findall(r"\]\(([0-9]{2}_[a-z_]+\.ipynb)(?:#([^)]+))?\)", glossary)
    assert links, "the glossary links no notebook"
    for name, anchor in links:
        path = NOTEBOOK_DIR / name
        assert path.exists(), f"the glossary links a missing notebook {name}"
        if anchor:
            assert anchor in _anchors(nbformat.read(path, as_version=4)), f"{name} has no section #{anchor}"
