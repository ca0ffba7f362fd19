"""The experiment suite (experiments/*.ipynb, run by `reenactbook reproduce`): every notebook takes the runner's parameters,
and one notebook (05, the cheapest) runs through papermill with tiny knobs and writes its tables and figures."""
import json
import math
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent
EXPERIMENTS = REPO / "experiments"
RUNNER_PARAMETERS = ("profile", "data_root", "results_dir", "device", "seed")


def _parameters_cell(notebook: Path) -> str:
    cells = json.loads(notebook.read_text())["cells"]
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{notebook.name}: {len(tagged)} cells tagged 'parameters', expected 1"
    assert tagged[0] is next(c for c in cells if c["cell_type"] == "code"), f"{notebook.name}: the parameters cell must be the first code cell"
    return "".join(tagged[0]["source"])


def test_every_notebook_takes_the_runner_parameters():
    from reenactbook.experiments import experiment_notebooks
    notebooks = experiment_notebooks(EXPERIMENTS)
    assert [p.name[:2] for p in notebooks] == ["00", "01", "02", "03", "04", "05", "06", "07", "08"]
    for notebook in notebooks:
        values = {}
        exec(_parameters_cell(notebook), {}, values)  # plain assignments only
        missing = [name for name in RUNNER_PARAMETERS if name not in values]
        assert not missing, f"{notebook.name}: parameters cell lacks {missing}"
        assert values["profile"] == "tiny" and values["seed"] == 0 and values["device"] == "auto"
        assert values["results_dir"] == f"results/tiny/{notebook.stem}", notebook.name
        outputs = [c.get("outputs") for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
        assert not any(outputs), f"{notebook.name}: stored with outputs; store the notebooks clean"



def test_experiment_setup_resolves_folders_from_the_repository_root(tmp_path, monkeypatch):
    from reenactbook.experiments import experiment_setup
    (tmp_path / "experiments").mkdir()
    monkeypatch.chdir(tmp_path / "experiments")                     # where papermill runs the notebooks
    setup = experiment_setup("results/tiny/05_x", data_root="data/prepared", device="cpu")
    assert setup.root == tmp_path and setup.results == tmp_path / "results" / "tiny" / "05_x" and setup.results.is_dir()
    assert setup.data_root == str(tmp_path / "data" / "prepared") and setup.device.type == "cpu" and setup.manifest is None
    assert setup.options.run.data_root == setup.data_root
    with pytest.raises(FileNotFoundError, match="run experiments/00_train_tiny.ipynb first"):
        experiment_setup("results/tiny/05_x", models_manifest="")   # default: 00_train_tiny/models.json beside the results
    (tmp_path / "results" / "tiny" / "00_train_tiny").mkdir()
    (tmp_path / "results" / "tiny" / "00_train_tiny" / "models.json").write_text('{"reenactors": {}}')
    assert experiment_setup("results/tiny/05_x", models_manifest="").manifest == {"reenactors": {}}


def _setup_statements(notebook: Path) -> str:
    "The setup cell of a notebook up to the line that unpacks `setup` (what every notebook shares; its models are loaded after)."
    import ast
    cells = [c for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
    source = "".join(cells[1]["source"])
    statements = ast.parse(source).body
    call = next(i for i, s in enumerate(statements) if isinstance(s, ast.Assign) and ast.unparse(s.targets[0]) == "setup")
    return "\n".join(ast.get_source_segment(source, s) for s in statements[: call + 2])  # the call and the line unpacking it


def test_every_notebook_runs_the_shared_setup(tmp_path, monkeypatch):
    "The parameters cell and the setup of every experiment notebook run, with its results folder in a temporary place."
    import torch
    from reenactbook.experiments import experiment_notebooks
    monkeypatch.chdir(EXPERIMENTS)
    (tmp_path / "models.json").write_text('{"lsg": {}, "reenactors": {}}')
    threads = torch.get_num_threads()
    try:
        for notebook in experiment_notebooks(EXPERIMENTS):
            code = _setup_statements(notebook)
            assert "experiment_setup(results_dir" in code and "Path.cwd()" not in code, notebook.name
            namespace = {}
            exec(_parameters_cell(notebook), namespace)
            namespace.update(results_dir=str(tmp_path / notebook.stem), device="cpu")
            if "models_manifest" in namespace:
                namespace["models_manifest"] = str(tmp_path / "models.json")
            exec(code, namespace)
            setup = namespace["setup"]
            assert setup.results == tmp_path / notebook.stem and setup.results.is_dir() and setup.root == REPO, notebook.name
            assert (setup.manifest is not None) == ("models_manifest" in namespace), notebook.name
    finally:
        torch.set_num_threads(threads)

def _suite_models() -> Path | None:
    "models.json of an earlier `reenactbook reproduce --profile tiny` from this checkout, when its checkpoints still exist."
    manifest = REPO / "results" / "tiny" / "00_train_tiny" / "models.json"
    if not manifest.exists():
        return None
    data = json.loads(manifest.read_text())
    paths = [data["lsg"]["checkpoint"], data["reenactors"].get("full", {}).get("checkpoint", "")]
    return manifest if all(p and Path(p).exists() for p in paths) else None


def _quick_models(folder: Path) -> Path:
    "A minute-free stand-in for 00_train_tiny: a tiny LSG (cached) and a one-step reenactor; they test the notebook, not the models."
    from reenactbook.lsg_train import pretrained_lsg
    from reenactbook.config import load_options
    from reenactbook.train import train_reenactor
    lsg = pretrained_lsg("tiny", {"lsg.steps": 20, "lsg.hidden": 16, "lsg.head_hidden": 32, "lsg.batch_size": 16,
                                  "lsg.checkpoint_every": 20, "lsg.log_every": 10}, device="cpu")
    options = load_options("tiny", {"reenactor.ngf": 4, "reenactor.ndf": 4, "reenactor.n_blocks": 1, "train.batch_size": 2,
                                        "train.max_steps": 1, "train.tensorboard": False, "train.eval_pairs": 1, "train.sample_pairs": 1,
                                        "train.cpu_threads": 1, "losses.terms": ["adversarial"], "views.pairs_per_identity": 1,
                                        "views.sketch_layout": "68", "run.device": "cpu"})
    result = train_reenactor(options, folder / "reenactor", overwrite=True, evaluate=False, show_progress=False)
    manifest = folder / "models.json"
    manifest.write_text(json.dumps({"lsg": {"checkpoint": str(lsg.source)}, "reenactors": {"full": {"checkpoint": result["reenactor"]}}}))
    return manifest


def test_noisy_refinement_notebook_writes_its_tables_and_figures(tmp_path):
    import papermill
    manifest = _suite_models() or _quick_models(tmp_path)
    results = tmp_path / "05_noisy_refinement"
    papermill.execute_notebook(str(EXPERIMENTS / "05_noisy_refinement.ipynb"), str(tmp_path / "executed.ipynb"),
                               parameters=dict(profile="tiny", results_dir=str(results), device="cpu", seed=0,
                                               models_manifest=str(manifest), n_windows=4, noise_px="0,2", judge_steps=20),
                               kernel_name="python3", cwd=str(EXPERIMENTS), progress_bar=False)
    for name in ("figure7_refinement.md", "figure7_refinement.csv", "figure7_errors_vs_noise.png",
                 "figure7_sketch_strips.png", "figure7_faces.png"):
        assert (results / name).stat().st_size > 0, name
    table = pd.read_csv(results / "figure7_refinement.csv")
    assert sorted(zip(table["noise σ (px)"], table["method"])) == [(0.0, "LI"), (0.0, "LSG"), (2.0, "LI"), (2.0, "LSG")]
    assert table.drop(columns="method").map(math.isfinite).all().all()
    li = table[table["method"] == "LI"].set_index("noise σ (px)")["landmark error, endpoints ↓ (px)"]
    assert li[0.0] == pytest.approx(0.0, abs=1e-4)                       # LI keeps clean endpoints exactly
    assert li[2.0] == pytest.approx(2.0 * math.sqrt(math.pi / 2), rel=0.15)  # ... and noisy ones: E|N(0, σ²I₂)| = σ√(π/2)
    assert (results / "figure7_refinement.md").read_text().startswith("| noise σ (px) | noise σ (inter-ocular) | method |")


def test_a_notebook_without_trained_models_says_which_notebook_to_run_first(tmp_path):
    import papermill
    with pytest.raises(papermill.PapermillExecutionError, match="run experiments/00_train_tiny.ipynb first"):
        papermill.execute_notebook(str(EXPERIMENTS / "05_noisy_refinement.ipynb"), str(tmp_path / "executed.ipynb"),
                                   parameters=dict(results_dir=str(tmp_path / "05"), models_manifest=str(tmp_path / "missing.json")),
                                   kernel_name="python3", cwd=str(EXPERIMENTS), progress_bar=False)


def _tiny_suite(folder):
    import nbformat
    def write(name, body):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell("profile='tiny'; results_dir='.'; data_root=''; device='cpu'; seed=0", metadata={"tags": ["parameters"]}),
                    nbformat.v4.new_code_cell(body)]
        nbformat.write(nb, folder / name)
    folder.mkdir()
    write("00_setup.ipynb", "from pathlib import Path; Path(results_dir, 'table.md').write_text('| a |\\n|---|\\n| 1 |')")
    write("01_other.ipynb", "from pathlib import Path; Path(results_dir, 'other.md').write_text('| b |\\n|---|\\n| 2 |')")
    return folder


def test_reproduce_runner_reports_merges_only_runs_and_names_the_failing_cell(tmp_path):
    from reenactbook.core import ReenactbookError
    from reenactbook.experiments import reproduce
    suite = _tiny_suite(tmp_path / "suite")
    out = tmp_path / "results"
    report = reproduce(out=str(out), notebooks_dir=str(suite))
    assert "| 1 |" in report.read_text() and "| 2 |" in report.read_text()
    report = reproduce(out=str(out), notebooks_dir=str(suite), only=["00_setup"])  # a partial re-run keeps the other sections
    assert "| 2 |" in report.read_text()
    (suite / "02_broken.ipynb").write_text((suite / "01_other.ipynb").read_text().replace("Path(results_dir, 'other.md')", "1/0 or Path('x')"))
    with pytest.raises(ReenactbookError, match=r"02_broken.ipynb failed in cell \d+: ZeroDivisionError"):
        reproduce(out=str(out), notebooks_dir=str(suite))


def _time_split_models(folder: Path) -> Path:
    "A one-step tiny reenactor trained with the tiny profile's time split (views.time_holdout=0.2), as 00 trains them."
    from reenactbook.config import load_options
    from reenactbook.train import train_reenactor, training_dataset
    from reenactbook.views import apply_time_split
    options = load_options("tiny", {"reenactor.ngf": 4, "reenactor.ndf": 4, "reenactor.n_blocks": 1, "train.batch_size": 2,
                                    "train.max_steps": 1, "train.tensorboard": False, "train.eval_pairs": 1, "train.sample_pairs": 1,
                                    "train.cpu_threads": 1, "losses.terms": ["adversarial"], "views.pairs_per_identity": 1,
                                    "views.sketch_layout": "68", "run.device": "cpu"})
    dataset = apply_time_split(training_dataset(options), options.views)
    result = train_reenactor(options, folder / "reenactor", overwrite=True, dataset=dataset, evaluate=False, show_progress=False)
    manifest = folder / "models.json"
    manifest.write_text(json.dumps({"reenactors": {"full": {"checkpoint": result["reenactor"]},
                                                   "vanilla": {"checkpoint": result["reenactor"]}}}))
    return manifest


def test_self_reenactment_and_finetune_notebooks_write_their_tables(tmp_path):
    "07 (unseen time, with bootstrap intervals and reference rows) and 08 (few-shot fine-tuning) on a one-step model."
    import papermill
    manifest = _time_split_models(tmp_path)
    run = lambda name, **knobs: papermill.execute_notebook(
        str(EXPERIMENTS / f"{name}.ipynb"), str(tmp_path / f"{name}.ipynb"), kernel_name="python3", cwd=str(EXPERIMENTS), progress_bar=False,
        parameters=dict(profile="tiny", results_dir=str(tmp_path / name), device="cpu", seed=0, models_manifest=str(manifest), **knobs))
    run("07_self_reenactment", frames_per_clip=2, max_pairs=12, bootstrap=100, fid=False)
    table = pd.read_csv(tmp_path / "07_self_reenactment" / "self_reenactment.csv").set_index("method")
    assert list(table.index) == ["full", "vanilla", "identity copy", "real target"]
    assert table.loc["real target", "SSIM ↑"] == pytest.approx(1.0) and table.loc["real target", "L1 ↓"] == 0
    assert table.loc["full", "L1 ↓"] > 0 and table.loc["full", "SSIM 95% CI"].startswith("[")
    note = (tmp_path / "07_self_reenactment" / "self_reenactment.md").read_text()
    assert "never seen in training" in note and "Identity network (CSIM, AED): **" in note
    differences = pd.read_csv(tmp_path / "07_self_reenactment" / "self_reenactment_ablation_differences.csv")
    same = differences[differences["comparison"] == "full - vanilla"].iloc[0]     # one model under two names: no difference
    assert same["difference"] == pytest.approx(0.0, abs=1e-6) and not same["beyond noise"]
    run("08_finetune", steps=1, n_eval=2, max_identities=1)
    tuned = pd.read_csv(tmp_path / "08_finetune" / "finetune_identity.csv")
    assert len(tuned) == 1 and tuned["steps"].iloc[0] == 1
    assert -1 <= tuned["identity similarity after ↑"].iloc[0] <= 1
    assert (tmp_path / "models" / f"{tuned['model'].iloc[0]}.card.json").exists()


def test_a_model_without_a_time_split_is_refused_by_the_self_reenactment_notebook(tmp_path):
    import papermill
    from reenactbook.config import load_options
    from reenactbook.reenactor import Reenactor
    options = load_options("tiny", {"views.time_holdout": 0.0, "reenactor.ngf": 4, "reenactor.ndf": 4, "reenactor.n_blocks": 1})
    checkpoint = Reenactor(options.reenactor).save(tmp_path / "m.safetensors", {"options": options.to_dict()})
    (tmp_path / "models.json").write_text(json.dumps({"reenactors": {"full": {"checkpoint": str(checkpoint)}}}))
    with pytest.raises(papermill.PapermillExecutionError, match="no unseen time"):
        papermill.execute_notebook(str(EXPERIMENTS / "07_self_reenactment.ipynb"), str(tmp_path / "x.ipynb"), kernel_name="python3",
                                   cwd=str(EXPERIMENTS), progress_bar=False,
                                   parameters=dict(results_dir=str(tmp_path / "07"), device="cpu", models_manifest=str(tmp_path / "models.json")))


def test_report_headlines_and_readme_section_come_from_the_report(tmp_path):
    import subprocess, sys
    from reenactbook.experiments import reproduce
    suite = tmp_path / "suite"
    suite.mkdir()
    import nbformat
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("profile='tiny'; results_dir='.'; data_root=''; device='cpu'; seed=0", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("from pathlib import Path; Path(results_dir, 'table2_one_shot.md').write_text('| method | SSIM |\\n|---|---|\\n| Ours | 0.123 |')")]
    nbformat.write(nb, suite / "00_setup.ipynb")
    report = reproduce(out=str(tmp_path / "results"), notebooks_dir=str(suite)).read_text()
    assert "**Scale: a smoke test.**" in report and "*What this can show:* Smoke scale" in report
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- results:start -->\nold numbers 0.999\n<!-- results:end -->\n\nrest\n")
    done = subprocess.run([sys.executable, str(REPO / "tools" / "readme_results.py"), "--results", str(tmp_path / "results"),
                           "--write", str(readme)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    text = readme.read_text()
    assert "| Ours | 0.123 |" in text and "0.999" not in text and text.startswith("# x") and text.endswith("rest\n")
    assert "Scale: a smoke test" in text
    readme.write_text("no markers\n")
    refused = subprocess.run([sys.executable, str(REPO / "tools" / "readme_results.py"), "--results", str(tmp_path / "results"),
                              "--write", str(readme)], capture_output=True, text=True)
    assert refused.returncode == 1 and "markers" in refused.stderr and readme.read_text() == "no markers\n"


def test_tier_data_takes_a_prepared_dataset_or_names_what_it_needs(tmp_path, monkeypatch):
    from reenactbook.core import ConfigError, DataError
    from reenactbook.experiments import tier_data, tier_estimate
    from reenactbook.views import _example_dataset
    prepared = _example_dataset(tmp_path / "prepared", identities=2, videos=1, frames=4)
    assert tier_data("sample", str(prepared.root)) == str(prepared.root.resolve())   # used as is, never prepared again
    assert tier_data("tiny") == ""                                                  # tiny makes its own data
    monkeypatch.delenv("REENACTBOOK_SAMPLES", raising=False)
    with pytest.raises(ConfigError, match="needs data"):
        tier_data("sample")
    with pytest.raises(DataError, match="no such folder"):
        tier_data("sample", str(tmp_path / "missing"))
    small, large = tier_estimate("sample", identities=2), tier_estimate("sample", identities=12)
    assert 0 < small["images"] < large["images"] and small["cpu_hours"] < large["cpu_hours"]
