"""The run config models: defaults, overrides, and one clear line per bad field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from argomlops.config import ConfigError, MLOpsSpec, RunConfig, VQVAEConfig, load_config


def test_defaults_round_trip_through_yaml(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(RunConfig().to_yaml())
    assert load_config(path) == RunConfig()
    assert "imageSize: 64" in path.read_text()


def test_snake_and_camel_keys_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("training:\n  vqvae:\n    batchSize: 8\n")
    config = load_config(path, ["training.vqvae.epochs=3", "data.image_size=32", "training.vqvae.batch_size=4"])
    assert config.training.vqvae.epochs == 3
    assert config.training.vqvae.batch_size == 4
    assert config.data.image_size == 32


def test_latent_channels_must_be_multiple_of_embedding_dim() -> None:
    with pytest.raises(ValidationError, match="48 is not a multiple of embeddingDim"):
        VQVAEConfig(embedding_dim=32, latent_channels=48)
    assert VQVAEConfig(embedding_dim=32, latent_channels=64).codes_per_position == 2
    assert VQVAEConfig(embedding_dim=32).codes_per_position == 1


def test_error_lines_name_the_field_path() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, ["models.vqvae.latentChannels=48", "data.bogus=1", "training.vqvae.epochs=0"])
    lines = info.value.lines
    assert any(line.startswith("models.vqvae.latentChannels: 48") for line in lines), lines
    assert "data.bogus: unknown field (got 1)" in lines
    assert any(line.startswith("training.vqvae.epochs:") and "(got 0)" in line for line in lines), lines


def test_image_size_must_fit_the_encoder() -> None:
    with pytest.raises(ValidationError, match="not divisible by 4"):
        RunConfig.model_validate({"data": {"imageSize": 30}})


def test_stage_order_and_tags_rules() -> None:
    with pytest.raises(ValidationError, match="run in the order"):
        RunConfig(stages=["pixelcnn", "vqvae"])
    with pytest.raises(ValidationError, match="also in excludeTags"):
        RunConfig.model_validate({"data": {"metadata": "m.jsonl", "includeTags": ["a"], "excludeTags": ["a"]}})
    with pytest.raises(ValidationError, match="need a metadata file"):
        RunConfig.model_validate({"data": {"source": "photos", "includeTags": ["a"]}})
    # A built-in data set carries its own metadata.
    assert RunConfig.model_validate({"data": {"includeTags": ["chelsea"]}}).data.include_tags == ["chelsea"]
    with pytest.raises(ValidationError, match="local path or gs://"):
        RunConfig(artifacts="s3://bucket/x")


def test_manifest_spec_splits_into_run_config() -> None:
    spec = MLOpsSpec.model_validate(
        {"image": "img:1", "artifacts": "gs://bucket/runs", "placement": {"gpus": 2}, "resumeFrom": "gs://bkt/r/1"}
    )
    run = spec.run_config()
    assert isinstance(run, RunConfig) and not isinstance(run, MLOpsSpec)
    assert run.artifacts == "gs://bucket/runs" and run.resume_from == "gs://bkt/r/1"
    assert "image" not in run.model_dump()


def test_validate_command_exit_codes(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("training:\n  vqvae:\n    epochs: 2\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  vqvae:\n    embeddingDim: 64\n    latentChannels: 96\n")
    cmd = [sys.executable, "-m", "argomlops.cli", "validate"]
    ok = subprocess.run([*cmd, str(good)], capture_output=True, text=True)
    assert (ok.returncode, ok.stdout.strip()) == (0, "ok")
    failed = subprocess.run([*cmd, str(bad)], capture_output=True, text=True)
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines() == [
        "error: models.vqvae.latentChannels: 96 is not a multiple of embeddingDim (64): each latent position is "
        "split into latentChannels/embeddingDim codes; use e.g. 64 or 128"
    ]
    assert (
        "tensorflow"
        not in subprocess.run(
            [sys.executable, "-c", "import sys, argomlops.cli, argomlops.config; print(sorted(sys.modules))"],
            capture_output=True,
            text=True,
        ).stdout
    )


@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        (["models.vqvae.latentChannels=48"], "models.vqvae.latentChannels: 48 is not a multiple of embeddingDim (32)"),
        (["data.imageSize=30"], "data.imageSize: 30 is not divisible by 4"),
        (["data.metadata=m.jsonl", "data.includeTags=[a]", "data.excludeTags=[a]"], "data.includeTags: ['a'] also in"),
        (["data.source=photos", "data.includeTags=[a]"], "data.metadata: includeTags/excludeTags need a metadata"),
    ],
)
def test_cross_field_rules_carry_the_field_they_blame(overrides: list[str], line: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    assert len(info.value.lines) == 1 and info.value.lines[0].startswith(line), info.value.lines


def test_blamed_field_travels_in_the_error_not_in_its_text() -> None:
    with pytest.raises(ValidationError) as info:
        VQVAEConfig(embedding_dim=32, latent_channels=48)
    (error,) = info.value.errors()
    assert error["type"] == "cross_field" and error["ctx"]["field"] == "latentChannels"
    assert not error["msg"].startswith("@")


def test_braces_in_a_blamed_message_are_kept() -> None:
    from argomlops.config.base import blame

    assert blame("x", "got {'a': 1}").message() == "got {'a': 1}"


def test_unknown_keys_are_named_as_written() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, ["no_such_field=1", "data.image_sizee=3", "training.vqvae.batch_size=0"])
    lines = sorted(info.value.lines)
    assert lines[0] == "data.image_sizee: unknown field (got 3)"
    assert lines[1] == "no_such_field: unknown field (got 1)"
    assert lines[2].startswith("training.vqvae.batch_size: Input should be greater than or equal to 1")


TOKEN = "ghp_notForAnyLogLine"


@pytest.mark.parametrize(
    "repo",
    [f"https://oauth2:{TOKEN}@github.com/x/y.git", f"https://{TOKEN}@github.com/x/y.git", f"http://u:{TOKEN}@h/y"],
)
def test_credentials_in_a_git_url_are_one_line_that_never_repeats_them(tmp_path: Path, repo: str) -> None:
    manifest = tmp_path / "mlops.yaml"
    manifest.write_text(
        f"apiVersion: argomlops.dev/v1alpha1\nkind: MLOps\nspec:\n  git: {{repo: '{repo}', command: [x]}}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "argomlops.cli", "validate", str(manifest)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: git.repo: repo must not carry credentials") and "Secret" in line
    assert TOKEN not in done.stderr + done.stdout


def test_a_private_repository_names_its_secret() -> None:
    git = {"repo": "https://github.com/x/private.git", "secret": "git-token", "command": ["python", "t.py"]}
    assert MLOpsSpec.model_validate({"git": git}).git.secret == "git-token"  # type: ignore[union-attr]
    with pytest.raises(ValidationError, match="secret"):
        MLOpsSpec.model_validate({"git": {**git, "secret": "Not A Name"}})
    # A user name without a password is still credentials; an @ in the path is not.
    with pytest.raises(ValidationError, match="credentials"):
        MLOpsSpec.model_validate({"git": {**git, "repo": "https://me@github.com/x/y.git"}})
    assert MLOpsSpec.model_validate({"git": {**git, "repo": "https://github.com/x/y@v2.git"}}).git is not None
